"""The HTML report, read back with the standard library's parser: structure, numbers, escaping, marks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from conveyor.data.statistics import StatisticsCombiner
from conveyor.exceptions import ArtifactError
from conveyor.report.page import format_number, format_share, format_value
from conveyor.report.statistics import _rebin, anomalies_html, artifacts_html, statistics_html
from tests.datasets import DATA

PENGUINS = DATA / "penguins" / "penguins.csv"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None] = field(default_factory=dict)
    children: list[Any] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def all(self, tag: str, cls: str | None = None) -> list[Node]:
        found = []
        for c in self.children:
            if isinstance(c, Node):
                if c.tag == tag and (cls is None or cls in c.classes()):
                    found.append(c)
                found += c.all(tag, cls)
        return found


class _Tree(HTMLParser):
    """A strict tree: every element closed by its own end tag, as the report writes them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    assert tree.stack == [tree.root], f"unclosed: {[n.tag for n in tree.stack[1:]]}"
    return tree.root


def feature_rows(doc: Node) -> dict[str, Node]:
    return {str(row.attrs["data-name"]): row for row in doc.all("tr", "feat")}


def cells(row: Node) -> list[list[str]]:
    """Each cell's lines, one per split."""
    return [
        [d.text() for d in td.children if isinstance(d, Node)] for td in row.all("td") if "chart" not in td.classes()
    ]


@pytest.fixture(scope="module")
def penguins() -> tuple[pd.DataFrame, dict[str, dict]]:
    df = pd.read_csv(PENGUINS)
    parts = {"train": df[df.index % 4 != 0], "eval": df[df.index % 4 == 0]}
    stats = {}
    for name, part in parts.items():
        c = StatisticsCombiner()
        acc = c.create()
        c.add_batch(acc, pa.Table.from_pandas(part, preserve_index=False))
        stats[name] = c.extract(acc)
    return df, stats


def test_page_is_well_formed_and_self_contained(penguins: tuple[pd.DataFrame, dict]) -> None:
    page = statistics_html(penguins[1], "penguins")
    doc = parse(page)
    assert [n.text() for n in doc.all("head")[0].all("title")] == ["penguins"]
    assert len(doc.all("style")) == 1
    assert [s.attrs for s in doc.all("script")] == [{}]
    assert "://" not in page and "@import" not in page and "url(" not in page
    assert all(str(a.attrs.get("href", "")).startswith("#") for a in doc.all("a"))


def test_every_feature_shows_both_splits_with_a_chart(penguins: tuple[pd.DataFrame, dict]) -> None:
    df, stats = penguins
    rows = feature_rows(parse(statistics_html(stats, "penguins")))
    assert set(rows) == set(df.columns)
    for name, row in rows.items():
        assert cells(row)[0] == ["train", "eval"], name
        if pd.api.types.is_numeric_dtype(df[name]):
            fills = {r.attrs["fill"] for r in row.all("rect")}
            assert len(fills) == 2, name
    species = rows["species"].all("td", "chart")[0].text()
    assert all(v in species for v in ("Adelie", "Gentoo", "Chinstrap"))


def test_numbers_are_those_pandas_computes(penguins: tuple[pd.DataFrame, dict]) -> None:
    df, stats = penguins
    rows = feature_rows(parse(statistics_html(stats, "penguins")))
    train = df[df.index % 4 != 0]
    count, missing, mean, std, _, lo, _, hi = (c[0] for c in cells(rows["bill_length_mm"])[1:])
    s = train["bill_length_mm"]
    assert count == str(s.count())
    assert missing == f"{100 * s.isna().mean():.3g}%"
    assert (mean, std) == (f"{s.mean():.3g}", f"{s.std(ddof=0):.3g}")
    assert (lo, hi) == (f"{s.min():.3g}", f"{s.max():.3g}")
    top = train["species"].value_counts()
    assert cells(rows["species"])[1 + 3][0] == top.index[0]
    assert cells(rows["species"])[1 + 4][0] == f"{100 * top.iloc[0] / top.sum():.3g}%"


def test_hostile_values_are_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    stats = {
        "train & <b>": {
            "num_examples": 2,
            "features": {
                evil: {
                    "type": "string",
                    "count": 2,
                    "missing": 0,
                    "top_values": [{"value": "</div><script>alert('x')</script>", "count": 2}],
                },
            },
        }
    }
    anomalies = {
        "train": [
            {"feature": evil, "kind": "<i>KIND</i>", "severity": "error", "description": '"><svg onload=alert(2)>'}
        ]
    }
    page = statistics_html(stats, "<title>t</title>", anomalies)
    doc = parse(page)
    assert not doc.all("img")
    assert len(doc.all("script")) == 1 and len(doc.all("head")[0].all("title")) == 1
    assert not [n for n in doc.all("svg") if "onload" in n.attrs]
    text = doc.text()
    assert evil in text and "</div><script>alert('x')</script>" in text and "<i>KIND</i>" in text
    assert "train & <b>" in text and "<title>t</title>" in text


def test_anomalies_are_listed_first_and_marked_on_their_features(penguins: tuple[pd.DataFrame, dict]) -> None:
    anomalies = {
        "eval": [
            {
                "feature": "bill_length_mm",
                "kind": "DRIFT_JENSEN_SHANNON",
                "severity": "error",
                "description": "drifted",
                "details": {"test": "jensen_shannon", "value": 0.31, "threshold": 0.1},
            },
            {"feature": "island", "kind": "NEW_COLUMN", "severity": "warning", "description": "new"},
            {
                "feature": "year",
                "kind": "DRIFT_KS",
                "severity": "info",
                "description": "measured",
                "details": {"test": "ks", "value": 0.4567},
            },
            {
                "feature": "sex",
                "kind": "DRIFT_CHI_SQUARED",
                "severity": "info",
                "description": "past the threshold, not judged",
                "details": {"test": "chi_squared", "value": 1e-9, "drifted": True, "judged": False},
            },
            {"feature": None, "kind": "EMPTY_DATASET", "severity": "error", "description": "no rows"},
            "not an anomaly",
            {},
        ]
    }
    doc = parse(statistics_html(penguins[1], "penguins", anomalies))
    section = next(s for s in doc.all("section") if s.attrs.get("id") == "anomalies")
    listed = [r.all("td") for r in section.all("tr")[1:]]
    assert [(r[0].text(), r[2].text(), r[3].text()) for r in listed[:3]] == [
        ("error", "bill_length_mm", "DRIFT_JENSEN_SHANNON"),
        ("error", "(dataset)", "EMPTY_DATASET"),
        ("warning", "island", "NEW_COLUMN"),
    ]
    assert "2 measurements" in section.all("summary")[0].text()
    rows = feature_rows(doc)
    assert "error" in rows["bill_length_mm"].classes()
    assert [b.text() for b in rows["bill_length_mm"].all("a", "badge")] == ["DRIFT_JENSEN_SHANNON"]
    assert "warning" in rows["island"].classes()
    assert [b.text() for b in rows["year"].all("a", "info")] == ["KS p 0.457"]
    assert not rows["year"].all("a", "drifted")
    assert [b.text() for b in rows["sex"].all("a", "drifted")] == ["χ² p 1e-09"]
    assert not {"error", "warning"} & set(rows["year"].classes() + rows["sex"].classes() + rows["species"].classes())


def test_missing_and_unknown_keys_render_as_dashes() -> None:
    stats = {
        "train": {
            "num_examples": 3,
            "features": {
                "x": {"type": "float", "count": 3, "brand_new": {"a": 1}},
                "y": {"type": "string"},
                "z": {"type": "other", "count": 1, "missing": 2},
                "bad": "not a dict",
            },
        },
        "eval": {"features": {"x": {"type": "float", "histogram": {"boundaries": [0, 1], "counts": [1, 2]}}}},
        "junk": "not a dict",
    }
    rows = feature_rows(parse(statistics_html(stats, "odd")))
    assert set(rows) == {"x", "y", "z"}
    x = cells(rows["x"])
    assert x[0] == ["train", "eval", "junk absent"]
    assert x[1] == ["3", "-", "-"] and x[3] == ["-", "-", "-"]
    assert cells(rows["y"])[0][1] == "eval absent"
    assert cells(rows["z"])[2][0] == "66.7%"


@pytest.mark.parametrize(
    ("given", "number_shown", "value_shown"),
    [
        (None, "-", "-"),
        (0, "0", "0"),
        (6513, "6,513", "6513"),
        (1484705, "1,484,705", "1,484,705"),
        (2009.0, "2,009", "2009"),
        (38.5816, "38.6", "38.6"),
        (189745.23, "189,745", "189,745"),
        (999.7, "1,000", "1000"),
        (0.012345, "0.0123", "0.0123"),
        (0.9996, "0.9996", "0.9996"),  # no perfect 1
        (-0.99951, "-0.9995", "-0.9995"),
        (0.00001234, "1.23e-05", "1.23e-05"),
        (-4.5, "-4.5", "-4.5"),
        (True, "True", "True"),
        ("a<b", "a&lt;b", "a&lt;b"),
    ],
)
def test_numbers_read_at_a_glance(given: Any, number_shown: str, value_shown: str) -> None:
    assert format_number(given) == number_shown
    assert format_value(given) == value_shown


def test_shares() -> None:
    assert [
        format_share(0, 10),
        format_share(1, 3),
        format_share(1, 100_000),
        format_share(5, 0),
        format_share(None, 3),
        format_share(9_996, 10_000),
        format_share(99_996, 100_000),
        format_share(10_000, 10_000),
        format_share(float("nan"), 3),
    ] == [
        "0%",
        "33.3%",
        "<0.01%",
        "-",
        "-",
        "99.96%",  # 4 rows of 10,000 missing is not "100%" present
        ">99.99%",
        "100%",
        "-",
    ]


def test_rebinning_keeps_each_split_whole() -> None:
    assert _rebin([0, 1, 2], [1, 3], [0, 1, 2]) == [0.25, 0.75]
    assert _rebin([0, 2], [4], [0, 1, 2, 3, 4]) == [0.5, 0.5, 0.0, 0.0]
    assert _rebin([3, 3], [7], [0, 1, 2, 3, 4]) == [0.0, 0.0, 0.0, 1.0]
    assert _rebin([4, 4], [7], [0, 2, 4]) == [0.0, 1.0]


def _write(folder: Path, split: str, name: str, content: Any) -> None:
    (folder / f"Split-{split}").mkdir(parents=True, exist_ok=True)
    (folder / f"Split-{split}" / name).write_text(json.dumps(content))


def test_artifacts_on_disk_pair_splits_of_the_same_name(tmp_path: Path, penguins: tuple[pd.DataFrame, dict]) -> None:
    for source in ("a", "b"):
        for split, s in penguins[1].items():
            _write(tmp_path / source, split, "statistics.json", s)
    doc = parse(artifacts_html("two spans", {"#1": tmp_path / "a", "#2": tmp_path / "b"}))
    row = feature_rows(doc)["species"]
    assert cells(row)[0] == ["train · #1", "train · #2", "eval · #1", "eval · #2"]
    colours = [i.attrs["style"] for i in row.all("td")[0].all("i")]
    assert len(set(colours)) == 4


def test_anomalies_page_needs_no_statistics(tmp_path: Path) -> None:
    measured = {"feature": "g", "kind": "DRIFT_KS", "severity": "info", "description": "m", "details": {"test": "ks"}}
    _write(tmp_path, "eval", "anomalies.json", {"anomalies": [], "measurements": [measured], "counts": {"info": 1}})
    _write(
        tmp_path,
        "train",
        "anomalies.json",
        {"anomalies": [{"feature": "f", "kind": "K", "severity": "warning", "description": "d"}]},
    )
    doc = parse(artifacts_html("anomalies", {}, tmp_path))
    assert "1 warning" in doc.text() and "in train, eval" in doc.text()
    assert "1 measurement under" in doc.all("summary")[0].text()
    assert not doc.all("table", "features")
    assert "No anomalies in eval." in parse(anomalies_html({"eval": []}, "clean")).text()


def test_nothing_to_show_or_a_broken_file_names_the_place(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"No Split-<name>/statistics.json under .*empty"):
        artifacts_html("t", {"": tmp_path / "empty"})
    (tmp_path / "bad" / "Split-train").mkdir(parents=True)
    (tmp_path / "bad" / "Split-train" / "statistics.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"Cannot read .*bad/Split-train/statistics.json"):
        artifacts_html("t", {"": tmp_path / "bad"})


def test_slices_are_shown_with_their_counts_and_a_feature_picker(tmp_path: Path) -> None:
    df = pd.read_csv(PENGUINS)
    parts = {"train": df[df.index % 4 != 0], "eval": df[df.index % 4 == 0]}
    for name, part in parts.items():
        c = StatisticsCombiner([["species"], ["island", "sex"]])
        acc = c.create()
        c.add_batch(acc, pa.Table.from_pandas(part, preserve_index=False))
        out = tmp_path / "stats" / f"Split-{name}"
        out.mkdir(parents=True)
        (out / "statistics.json").write_text(json.dumps(c.extract(acc)))
    doc = parse(artifacts_html("penguins", {"": tmp_path / "stats"}))
    section = next(s for s in doc.all("section") if s.attrs.get("id") == "slices")
    tables = {t.all("th")[0].text(): t for t in section.all("table", "slices")}
    assert set(tables) == {"species", "island,sex"}
    rows = {r.all("th")[0].text(): r for r in tables["species"].all("tbody")[0].all("tr")}
    assert set(rows) == set(df.species.unique())
    for species, row in rows.items():
        counts = [td.text() for td in row.all("td") if "sf" not in td.classes()]
        expected = [(p.species == species).sum() for p in parts.values()]
        assert counts[0::2] == [str(n) for n in expected], species
        assert counts[1::2] == [f"{100 * n / len(p):.3g}%" for n, p in zip(expected, parts.values(), strict=True)]
    # One cell per feature, the first shown; the picker lists the features in the same order.
    gentoo = rows["Gentoo"].all("td", "sf")
    options = [o.text() for o in section.all("select")[0].all("option")]
    assert options == list(df.columns)
    assert [td.attrs.get("hidden", "shown") for td in gentoo] == ["shown"] + [None] * (len(options) - 1)
    mass = gentoo[options.index("body_mass_g")].all("div")[0].text()
    train = parts["train"]
    assert mass.startswith(f"mean {format_value(train[train.species == 'Gentoo'].body_mass_g.mean())} · ")
    assert "island=Biscoe,sex=male" in {r.all("th")[0].text() for r in tables["island,sex"].all("tbody")[0].all("tr")}


def test_nan_and_infinite_values_show_beside_the_missing_share() -> None:
    c = StatisticsCombiner()
    acc = c.create()
    c.add_batch(acc, pa.table({"x": [1.0, float("inf"), float("inf"), float("-inf"), float("nan"), None]}))
    doc = parse(statistics_html({"train": c.extract(acc)}, "t"))
    missing = feature_rows(doc)["x"].all("td")[2].all("div")[0]
    assert missing.text() == "16.7% 1 NaN 2 +inf 1 -inf"
    assert "left out of the mean, std dev, min, max and histogram" in str(missing.attrs["title"])


def test_a_very_long_feature_name_is_cut_where_shown_and_whole_in_its_tooltip() -> None:
    name = "x" * 3000
    stats = {"train": {"num_examples": 1, "features": {name: {"type": "string", "count": 1, "missing": 0}}}}
    anomalies = {"train": [{"feature": name, "kind": "NEW_COLUMN", "severity": "error", "description": "new"}]}
    doc = parse(statistics_html(stats, "t", anomalies))
    shown = doc.all("div", "fname")[0]
    assert shown.attrs["title"] == name
    assert len(shown.text()) == 120 and shown.text().endswith("…")
    link = doc.all("table", "anomalies")[0].all("a")[0]
    assert link.attrs["title"] == name and len(link.text()) == 120


def _slice_tables(stats: dict[str, dict]) -> dict[str, tuple[str, list[str]]]:
    """Each slicing's heading, its summary line and its rows' headings, as the page shows them."""
    section = next(s for s in parse(statistics_html(stats, "t")).all("section") if s.attrs.get("id") == "slices")
    return {
        d.all("table")[0].all("th")[0].text(): (d.all("summary")[0].text(), [r.all("th")[0].text() for r in d.all("tbody")[0].all("tr")])
        for d in section.all("details")
    }  # fmt: skip


def test_slices_of_names_and_values_holding_commas_and_equals_read_as_the_data() -> None:
    table = pa.table({"a=b": ["x", "y=z", None, "(missing)", ""], "plan, tier": ["p,1", "p,1", "q", "q", "q"]})
    c = StatisticsCombiner([["a=b"], ["plan, tier"], ["a=b", "plan, tier"]])
    tables = _slice_tables({"train": c.extract(c.add_batch(c.create(), table))})
    assert set(tables) == {"a=b", "plan, tier", "a=b,plan, tier"}
    assert sorted(tables["a=b"][1]) == ["(empty)", "(missing)", "(missing)", "x", "y=z"]  # a null, and the text
    assert sorted(tables["plan, tier"][1]) == ["p,1", "q"]
    assert len(tables["a=b,plan, tier"][1]) == 5


def test_a_slicing_on_an_id_shows_its_largest_slices_and_says_how_many_there_are() -> None:
    ids = [f"user-{i}" for i in range(3_000)] + ["user-7"] * 5
    table = pa.table({"user": ids, "x": [float(i) for i in range(len(ids))]})
    c = StatisticsCombiner([["user"]])
    summary, shown = _slice_tables({"train": c.extract(c.add_batch(c.create(), table))})["user"]
    assert len(shown) == 100 and shown[0] == "user-7"
    assert "100 largest of 3,000 slices" in summary
