(() => {
  const q = document.getElementById("q"), flagged = document.getElementById("flagged"), sort = document.getElementById("sort");
  const tables = [...document.querySelectorAll("table.features")];
  tables.forEach(t => [...t.tBodies[0].rows].forEach((r, i) => { r.dataset.order = i; }));
  const keys = {
    order: (a, b) => a.dataset.order - b.dataset.order,
    name: (a, b) => a.dataset.name.localeCompare(b.dataset.name),
    missing: (a, b) => b.dataset.missing - a.dataset.missing || a.dataset.order - b.dataset.order,
    sev: (a, b) => b.dataset.sev - a.dataset.sev || a.dataset.order - b.dataset.order,
  };
  function apply() {
    const text = q.value.trim().toLowerCase();
    for (const t of tables) {
      const body = t.tBodies[0];
      for (const r of [...body.rows].sort(keys[sort.value])) {
        r.hidden = (text && !r.dataset.name.includes(text)) || (flagged.checked && r.dataset.sev === "0");
        body.appendChild(r);
      }
    }
  }
  [q, flagged, sort].forEach(e => e.addEventListener("input", apply));
})();
document.querySelectorAll("select.slice-pick").forEach(pick => pick.addEventListener("input", () => {
  document.getElementById(pick.dataset.table).querySelectorAll("td.sf").forEach(td => { td.hidden = td.dataset.f !== pick.value; });
}));
