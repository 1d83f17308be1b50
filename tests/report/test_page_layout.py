"""What a reader sees of values from the data and of the page's layout: text direction, datetime axes,
the reason a model was not blessed, and (in headless Chromium) tables that stay in their boxes at
phone and desktop widths and content a printout keeps."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conveyor.data.statistics import StatisticsCombiner
from conveyor.report.evaluation import evaluation_html
from conveyor.report.model_card import model_card_html
from conveyor.report.notebook import schema_artifact_html
from conveyor.report.statistics import anomalies_html, statistics_html
from tests.report.test_statistics import Node, parse

CHROMIUM = Path("/usr/bin/chromium")
RIGHT_TO_LEFT = ["مرحبا بالعالم", "\u202eevil", "שלום"]  # Arabic, a right-to-left override left open, Hebrew


def statistics(table: pa.Table, slices: list[list[str]] | None = None) -> dict[str, Any]:
    combiner = StatisticsCombiner(slices or [])
    acc = combiner.create()
    combiner.add_batch(acc, table)
    return combiner.extract(acc)


def slice_lines(doc: Node) -> list[Node]:
    """The slice table's per-split lines of the first feature: "<top value> <share>"."""
    return [div for td in doc.all("td", "sf") if td.attrs.get("data-f") == "0" for div in td.all("div")]


def test_a_value_written_right_to_left_cannot_reorder_the_share_beside_it() -> None:
    """An open U+202E in a value drew its slice line "%001 live" for "evil 100%": each value sits in a <bdi>."""
    values = [*RIGHT_TO_LEFT, ""]
    doc = parse(statistics_html({"train": statistics(pa.table({"v": values * 3}), [["v"]])}, "t"))
    lines = slice_lines(doc)
    assert len(lines) == len(values)
    for line in lines:
        value, share = line.children
        assert share.strip() == "100%"
        if value.tag == "bdi":
            assert value.text() in RIGHT_TO_LEFT
        else:
            assert (value.tag, value.text()) == ("span", "(empty)")  # as the top values and slice headings say it
    assert sorted(line.all("bdi")[0].text() for line in lines if line.all("bdi")) == sorted(RIGHT_TO_LEFT)


def test_lists_of_values_keep_their_order_whatever_the_direction(tmp_path: Path) -> None:
    """Two right-to-left values joined by a comma were drawn in swapped order: the schema's domain and the
    evaluation's too-small slices isolate each value."""
    (tmp_path / "schema.yaml").write_text(
        json.dumps({"features": [{"name": "v", "type": "string", "domain": {"values": RIGHT_TO_LEFT}}]})
    )
    domain = parse(schema_artifact_html(str(tmp_path), "s")).all("td", "desc")[0]
    assert [b.text() for b in domain.all("bdi")] == RIGHT_TO_LEFT
    small = [{"slice": f"v={v}", "too_small": True, "example_count": 1} for v in RIGHT_TO_LEFT]
    page = evaluation_html({"task": "binary", "slices": [{"slice": "Overall", "metrics": {"auc": 0.7}}, *small]}, "e")
    row = next(tr for tr in parse(page).all("tr", "small"))
    assert [b.text() for b in row.all("bdi")] == [s["slice"] for s in small]


def times(start: dt.datetime, step: dt.timedelta, n: int = 50) -> pa.Table:
    """Times from ``start``, in UTC when it has a zone."""
    zone = "UTC" if start.tzinfo else None
    return pa.table({"at": pa.array([start + i * step for i in range(n)], pa.timestamp("us", tz=zone))})


@pytest.mark.parametrize(
    ("start", "ends", "stacked"),
    [
        (
            dt.datetime(2021, 3, 1, 0, 8, 16, tzinfo=dt.UTC),
            ["2021-03-01T00:08:16+00:00", "2021-04-19T00:08:16+00:00"],
            True,
        ),
        (dt.datetime(2021, 3, 1, 0, 8, 16), ["2021-03-01T00:08:16", "2021-04-19T00:08:16"], False),
    ],
)
def test_a_datetime_axis_stacks_ends_too_long_to_share_a_line(
    start: dt.datetime, ends: list[str], stacked: bool
) -> None:
    """Ends of 25 characters ("2021-03-01T00:08:16+00:00") overlapped under the 260-pixel chart."""
    stats = statistics(times(start, dt.timedelta(days=1)))
    chart = parse(statistics_html({"train": stats}, "t")).all("td", "chart")[0]
    axis = chart.all("text")
    assert [t.text() for t in axis] == ends
    assert (axis[0].attrs["y"] != axis[1].attrs["y"]) is stacked
    svg = chart.all("svg")[0]
    assert float(str(axis[1].attrs["y"])) < float(str(svg.attrs["height"])), "the lower end is inside the chart"


def test_a_model_not_blessed_says_why_beside_its_checks() -> None:
    """The checks table showed "failed"; the Evaluator's reason (which bound, on how many rows, what to change) was not shown."""
    reason = (
        "auc 0.834 is below its lower_bound 0.99 (1 of 1 threshold checks failed, on the whole set of 2440 examples)."
    )
    check = {
        "metric": "auc",
        "kind": "lower_bound",
        "threshold": 0.99,
        "value": 0.834,
        "baseline": None,
        "passed": False,
    }
    validation = {"blessed": False, "checks": [check], "reason": reason}
    doc = parse(evaluation_html({"task": "binary", "slices": [], "validation": validation}, "e"))
    shown = next(s for s in doc.all("section") if s.attrs.get("id") == "validation")
    assert [p.text() for p in shown.all("p")] == [reason]
    validation.update(blessed=True, reason=None, checks=[{**check, "passed": True}])
    shown = next(s for s in parse(evaluation_html({"validation": validation}, "e")).all("section"))
    assert not shown.all("p")


# --- in a browser -------------------------------------------------------------------------------

MEASURE = """JSON.stringify({
  spill: [...document.querySelectorAll('section table')].filter(t => t.checkVisibility()).filter(t => {
    const box = t.closest('section').getBoundingClientRect(), r = t.getBoundingClientRect();
    return r.right > box.right + 1 && !t.closest('.scroll');
  }).map(t => t.className || t.tagName),
  names: [...document.querySelectorAll('th.name')].map(th => th.getBoundingClientRect().width),
  overlapping: [...document.querySelectorAll('svg.hist')].filter(svg => {
    const [a, b] = [...svg.querySelectorAll(':scope > text')].map(t => t.getBoundingClientRect());
    return b && a.right > b.left && a.bottom > b.top;
  }).length,
  text: document.body.innerText,
  clipped: [...document.querySelectorAll('th')].filter(th => {
    for (let box = th.parentElement; box; box = box.parentElement)
      if (getComputedStyle(box).overflowX !== 'visible' && th.getBoundingClientRect().right > box.getBoundingClientRect().right + 1)
        return true;
    return false;
  }).map(th => th.textContent),
})"""


class Browser:
    """Headless Chromium driven over ``--remote-debugging-pipe``: the DevTools protocol with no socket or package."""

    def __init__(self, profile: str) -> None:
        self.to_chromium, self.from_chromium = os.pipe(), os.pipe()
        commands, answers = self.to_chromium[0], self.from_chromium[1]

        def wire() -> None:  # Chromium reads commands on fd 3 and writes answers on fd 4
            os.dup2(commands, 3)
            os.dup2(answers, 4)

        self.process = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", "--disable-background-networking", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=wire, env={**os.environ, "HOME": profile},
        )  # fmt: skip
        os.close(commands)
        os.close(answers)
        self.buffer, self.sent = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.sent += 1
        message = {"id": self.sent, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self.to_chromium[1], json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.from_chromium[0], 1 << 16)
                assert chunk, "Chromium closed its pipe"
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self.sent:
                assert "error" not in answer, answer
                return answer["result"]

    def measure(self, page: Path, width: int, media: str = "") -> dict[str, Any]:
        on = self.session
        self.call("Emulation.setDeviceMetricsOverride", on, width=width, height=900, deviceScaleFactor=1, mobile=False)
        self.call("Emulation.setEmulatedMedia", on, media=media)
        self.call("Page.navigate", on, url=page.as_uri())
        for _ in range(50):
            ready = self.call("Runtime.evaluate", on, expression="document.readyState", returnByValue=True)
            if ready["result"]["value"] == "complete":
                break
        found = self.call("Runtime.evaluate", on, expression=MEASURE, returnByValue=True)
        return json.loads(found["result"]["value"])

    def close(self) -> None:
        self.process.terminate()  # not kill: the browser then stops its own helper processes
        self.process.wait()
        for fd in (self.to_chromium[1], self.from_chromium[0]):
            os.close(fd)


@pytest.fixture(scope="module")
def browser() -> Any:
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (Debian: apt-get install chromium) to draw the page")
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        chromium = Browser(profile)
        yield chromium
        chromium.close()


def four_splits(tmp_path: Path) -> Path:
    """Statistics of four splits, a datetime in UTC among them, and measurements under a closed <details>."""
    table = pa.table({
        "consumer_complaint_narrative": [f"value number {i % 40}" for i in range(400)],
        "at": pa.array([dt.datetime(2021, 3, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=7 * i) for i in range(400)],
                       pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    split = statistics(table)
    labels = ["train", "train · baseline", "eval", "eval · baseline"]
    measured = [
        {"feature": "at", "kind": "DRIFT_KS", "severity": "info", "description": "at: KS p-value 0.5, measured"}
    ]
    page = tmp_path / "statistics.html"
    page.write_text(anomalies_html({"train": measured}, "t", dict.fromkeys(labels, split)), encoding="utf-8")
    return page


@pytest.mark.parametrize("width", [390, 1280])
def test_tables_stay_in_their_boxes_and_names_stay_whole(browser: Browser, tmp_path: Path, width: int) -> None:
    """Four splits drew the table past its section at 1280 px; at 390 px every table spilled out and
    feature names broke every few letters; a model card's long paths ran off the page."""
    seen = browser.measure(four_splits(tmp_path), width)
    assert seen["spill"] == []
    assert min(seen["names"]) >= 100
    assert seen["overlapping"] == 0, "the two ends of a histogram's axis overlap"
    card = tmp_path / "card.html"
    where = "/a/very/long/path/without/any/space/" * 6
    card.write_text(model_card_html({"data": [{"id": 1, "fingerprint": "f" * 64, "uri": where}]}), encoding="utf-8")
    assert browser.measure(card, width)["spill"] == []


def test_a_printout_keeps_what_a_reader_folds_or_scrolls(browser: Browser, tmp_path: Path) -> None:
    """Printed, the measurements under a closed <details> vanished and metrics past a scroll box were cut."""
    assert "at: KS p-value 0.5, measured" in browser.measure(four_splits(tmp_path), 700, media="print")["text"]
    overall = {"slice": "Overall", "metrics": {f"metric_{i}": 0.5 for i in range(14)}}
    page = tmp_path / "evaluation.html"
    page.write_text(evaluation_html({"task": "regression", "slices": [overall]}, "e"), encoding="utf-8")
    assert browser.measure(page, 700, media="print")["clipped"] == []
