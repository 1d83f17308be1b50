"""``conveyor show ID --html OUT`` on artifacts a real pipeline made, and the page as a browser draws it."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, run_cli
from tests.report.test_statistics import cells, feature_rows, parse

CHROMIUM = Path("/usr/bin/chromium")
PENGUIN_COLUMNS = {
    "species",
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture pipeline, run by the CLI: statistics of two spans, a schema, anomalies against a baseline."""
    root = tmp_path_factory.mktemp("report")
    done = run_cli("run", str(FIXTURES / "statistics_pipeline.py"), "--root", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def ids(root: Path) -> dict[str, int]:
    """The artifact each step made, by step."""
    run_id = json.loads(run_cli("runs", "--root", str(root), "--json").stdout)[0]["id"]
    steps = json.loads(run_cli("show", run_id, "--root", str(root), "--json").stdout)["executions"]
    return {x["component_id"]: arts[0]["id"] for x in steps for arts in x["outputs"].values()}


def show_html(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("show", *args, "--root", str(root))


def test_statistics_page_of_a_real_artifact(root: Path, ids: dict[str, int]) -> None:
    out = root / "stats.html"
    done = show_html(root, str(ids["StatisticsGen"]), "--html", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {out}"
    doc = parse(out.read_text(encoding="utf-8"))
    rows = feature_rows(doc)
    assert set(rows) == PENGUIN_COLUMNS
    assert all(cells(row)[0] == ["train", "eval"] for row in rows.values())
    assert doc.all("h1")[0].text().startswith(f"ExampleStatistics {ids['StatisticsGen']} · StatisticsGen, run-")
    assert not [s for s in doc.all("section") if s.attrs.get("id") == "anomalies"]


def test_anomalies_page_brings_the_statistics_the_validator_read(root: Path, ids: dict[str, int]) -> None:
    out = root / "anomalies.html"
    done = show_html(root, str(ids["ExampleValidator"]), "--html", str(out))
    assert done.returncode == 0, done.stderr
    doc = parse(out.read_text(encoding="utf-8"))
    rows = feature_rows(doc)
    assert set(rows) == PENGUIN_COLUMNS
    assert cells(rows["year"])[0] == ["train", "train · baseline", "eval", "eval · baseline"]
    assert "error" in rows["year"].classes() and "error" not in rows["species"].classes()
    assert [b.text() for b in rows["year"].all("a", "error")] == ["OUT_OF_RANGE"]
    assert rows["species"].all("a", "info"), "the measured drift of species, under its threshold"
    assert "OUT_OF_RANGE" in doc.all("section")[0].text()


def test_compare_puts_a_later_span_beside_the_first(root: Path, ids: dict[str, int]) -> None:
    every, recent = ids["StatisticsGen"], ids["RecentStatistics"]
    out = root / "compare.html"
    done = show_html(root, str(every), "--html", str(out), "--compare", str(recent))
    assert done.returncode == 0, done.stderr
    rows = feature_rows(parse(out.read_text(encoding="utf-8")))
    assert cells(rows["year"])[0] == [
        f"train · #{every}",
        f"train · #{recent}",
        f"eval · #{every}",
        f"eval · #{recent}",
    ]
    assert cells(rows["year"])[6] == ["2007", "2009", "2007", "2009"]  # min


def test_schema_page_lists_each_feature_with_its_type(root: Path, ids: dict[str, int]) -> None:
    """A notebook too small for a schema's page points here; it was refused."""
    out = root / "schema.html"
    done = show_html(root, str(ids["SchemaGen"]), "--html", str(out))
    assert done.returncode == 0, done.stderr
    doc = parse(out.read_text(encoding="utf-8"))
    assert doc.all("h1")[0].text().startswith(f"Schema {ids['SchemaGen']} · SchemaGen, run-")
    types = {row.all("td")[0].text(): row.all("td")[1].text() for row in doc.all("tbody")[0].all("tr")}
    assert set(types) == PENGUIN_COLUMNS
    assert (types["species"], types["year"], types["bill_length_mm"]) == ("string", "int", "float")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["split_penguins", "--html", "x.html"],
            "--html renders statistics, anomalies, schema and evaluation artifacts; artifact {} is Examples.",
        ),
        (["StatisticsGen", "--compare", "RecentStatistics"], "--compare goes with --html OUT"),
        (
            ["StatisticsGen", "--html", "x.html", "--compare", "ExampleValidator"],
            "--compare takes a statistics artifact; artifact {} is ExampleAnomalies.",
        ),
    ],
)
def test_what_cannot_be_drawn_is_one_line(root: Path, ids: dict[str, int], args: list[str], message: str) -> None:
    done = show_html(root, *(str(ids[a]) if a in ids else a for a in args))
    assert done.returncode == 2
    named = next(str(ids[a]) for a in reversed(args) if a in ids)
    assert done.stderr.startswith(f"error: {message.format(named)}"), done.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (Debian: apt-get install chromium) to draw the page"
)
def test_a_browser_draws_the_page(root: Path, ids: dict[str, int]) -> None:
    """Headless Chromium screenshots the anomalies page; its pixels hold both split colours and the error marks."""
    out = root / "browser.html"
    assert show_html(root, str(ids["ExampleValidator"]), "--html", str(out)).returncode == 0
    png = root / "browser.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                "--window-size=1200,1800",
                out.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
            env={**os.environ, "HOME": profile},
        )
    assert png.exists() and png.stat().st_size > 20_000, "no screenshot, or a near-empty one"
    width, height, pixels = read_png(png.read_bytes())
    assert (width, height) == (1200, 1800)
    counted = Counter(pixels)
    seen = {
        rgb: counted[rgb] for rgb in ((0x00, 0x72, 0xB2), (0xD5, 0x5E, 0x00), (0xC6, 0x28, 0x28), (0xFD, 0xEE, 0xEE))
    }
    assert all(n > 200 for n in seen.values()), (
        f"train blue, eval vermillion, error red and its tint each drawn: {seen}"
    )
    assert len(counted) > 50, "a page of text and charts, not a blank image"


def read_png(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """Width, height and RGB pixels of an 8-bit, non-interlaced RGB(A) PNG, as Chromium writes it; no Pillow."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + size]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw, stride, prev = zlib.decompress(idat), width * bpp, bytearray(width * bpp)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        start = y * (stride + 1)
        line = unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), prev, bpp)
        pixels += [tuple(line[i : i + 3]) for i in range(0, stride, bpp)]
        prev = line
    return width, height, pixels


def unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> bytearray:
    """Undo one scanline's PNG filter (none, sub, up, average, Paeth)."""
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + a) & 255
        elif kind == 2:
            line[i] = (line[i] + b) & 255
        elif kind == 3:
            line[i] = (line[i] + (a + b) // 2) & 255
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return line
