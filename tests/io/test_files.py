"""Finding inputs: TFX's span and version grammar, span choices, formats, over fsspec."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from conveyor.exceptions import DataValidationError, PipelineDefinitionError
from conveyor.io.files import Pattern, SpanSpec, format_of, select_files


def make(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("a\n1\n")


def choose(root: Path, pattern: str, span: object = "latest") -> tuple[list[str], list[int], int | None]:
    fs = fsspec.filesystem("file")
    sel = select_files(fs, str(root), Pattern.parse(pattern), SpanSpec.parse(span))
    return [str(Path(f).relative_to(root)) for f in sel.files], sel.spans, sel.version


def test_date_spec_gives_days_since_epoch_as_in_tfx() -> None:
    assert Pattern.parse("log-{YYYY}{MM}{DD}.data").span_version("log-20170101.data") == (17167, None)


def test_a_date_folder_of_adjacent_tokens_is_found(tmp_path: Path) -> None:
    """{YYYY}{MM}{DD} next to each other make one glob star, not '**' (which fsspec takes for any depth)."""
    make(tmp_path, "day-20260101/part-0.csv", "day-20260102/part-0.csv", "day-20260102/part-1.csv")
    assert Pattern.parse("day-{YYYY}{MM}{DD}/*.csv").glob == "day-*/*.csv"
    files, spans, _ = choose(tmp_path, "day-{YYYY}{MM}{DD}/*.csv")
    assert files == ["day-20260102/part-0.csv", "day-20260102/part-1.csv"]
    assert spans == [20455]


def test_span_width_and_version() -> None:
    p = Pattern.parse("span-{SPAN:2}/v{VERSION}/*.csv")
    assert p.span_version("span-03/v12/a.csv") == (3, 12)
    assert p.span_version("span-3/v12/a.csv") is None
    assert p.span_version("span-03/v12/sub/a.csv") is None


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("{YYYY}{MM}.csv", "all of {YYYY}"),
        ("{SPAN}-{YYYY}{MM}{DD}.csv", "both {SPAN} and a date"),
        ("data-{VERSION}.csv", "{VERSION} without {SPAN}"),
        ("data-{DAY}.csv", "unknown token {DAY}"),
    ],
)
def test_bad_patterns_say_what_is_wrong(pattern: str, words: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=words.replace("{", r"\{").replace("}", r"\}")):
        Pattern.parse(pattern)


def test_latest_takes_newest_span_and_its_newest_version(tmp_path: Path) -> None:
    make(tmp_path, "span-1/v1/a.csv", "span-2/v1/a.csv", "span-2/v2/a.csv", "span-2/v2/b.csv", "span-10/v1/a.csv")
    assert choose(tmp_path, "span-{SPAN}/v{VERSION}/*.csv") == (["span-10/v1/a.csv"], [10], 1)
    assert choose(tmp_path, "span-{SPAN}/v{VERSION}/*.csv", 2) == (["span-2/v2/a.csv", "span-2/v2/b.csv"], [2], 2)


@pytest.mark.parametrize("span", [[2, 5], "2-5", "latest:2"])
def test_ranges_take_several_spans(tmp_path: Path, span: object) -> None:
    make(tmp_path, "s1.csv", "s2.csv", "s5.csv")
    files, spans, _ = choose(tmp_path, "s{SPAN}.csv", span)
    assert files == ["s2.csv", "s5.csv"]
    assert spans == [2, 5]


def test_all_and_no_span(tmp_path: Path) -> None:
    make(tmp_path, "s1.csv", "s2.csv")
    assert choose(tmp_path, "s{SPAN}.csv", "all")[1] == [1, 2]
    assert choose(tmp_path, "*.csv") == (["s1.csv", "s2.csv"], [0], None)


def test_missing_span_lists_the_spans_there(tmp_path: Path) -> None:
    make(tmp_path, "s1.csv", "s2.csv")
    with pytest.raises(DataValidationError, match=r"No span 7 .* the spans there are 1, 2\."):
        choose(tmp_path, "s{SPAN}.csv", 7)


def test_no_match_names_pattern_and_folder_contents(tmp_path: Path) -> None:
    make(tmp_path, "notes.txt")
    with pytest.raises(DataValidationError, match=r"No files match pattern '\*\.csv' under .* \(it holds notes\.txt\)"):
        choose(tmp_path, "*.csv")


def test_hidden_and_marker_files_are_skipped(tmp_path: Path) -> None:
    make(tmp_path, "a.csv", "_SUCCESS", ".DS_Store")
    assert choose(tmp_path, "*")[0] == ["a.csv"]


@pytest.mark.parametrize("span", ["newest", -1, [3, 1], True, "1-"])
def test_bad_span_specs(span: object) -> None:
    with pytest.raises(PipelineDefinitionError, match=r"span must be|span range"):
        SpanSpec.parse(span)


def test_memory_filesystem() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/files-test/d-1.csv", b"a\n1\n")
    fs.pipe("/files-test/d-2.csv", b"a\n1\n")
    sel = select_files(fs, "/files-test", Pattern.parse("d-{SPAN}.csv"), SpanSpec.parse("latest"))
    assert sel.files == ["/files-test/d-2.csv"]
    fs.rm("/files-test", recursive=True)


def test_format_from_extensions() -> None:
    assert format_of(["a.csv.gz", "b.CSV", "SOURCE.md"]) == ("csv", ["SOURCE.md"])
    assert format_of(["a.ndjson"]) == ("jsonl", [])
    with pytest.raises(DataValidationError, match=r"two formats: a\.csv \(csv\) and b\.parquet \(parquet\)"):
        format_of(["a.csv", "b.parquet"])
    with pytest.raises(DataValidationError, match="pass input_format="):
        format_of(["a.dat"])


def test_two_readers_of_one_memory_file_each_read_it_whole() -> None:
    # fsspec's memory filesystem shares one file object between readers: each must get its own.
    import uuid

    import fsspec

    from conveyor.io.files import open_stream

    fs = fsspec.filesystem("memory")
    path = f"/readers-{uuid.uuid4().hex}/a.csv"
    fs.pipe(path, b"x\n" + b"1\n" * 1000)
    try:
        with open_stream(fs, path) as first, open_stream(fs, path) as second:
            head = first.read(10)
            assert second.read() == b"x\n" + b"1\n" * 1000
            assert head + first.read() == b"x\n" + b"1\n" * 1000
    finally:
        fs.rm(path)


@pytest.mark.parametrize(
    ("pattern", "files"),
    [
        ("data-{SPAN}*.csv", ["data-2-b.csv"]),  # a star right after a token: one star, not '**'
        ("span-{SPAN}/**.csv", ["span-2/a/b.csv", "span-2/c.csv"]),  # '**' inside a name: any depth
    ],
)
def test_a_star_beside_a_token_or_inside_a_name_finds_the_files(tmp_path: Path, pattern: str, files: list[str]) -> None:
    make(tmp_path, "data-1-a.csv", "data-2-b.csv", "span-1/c.csv", "span-2/c.csv", "span-2/a/b.csv")
    assert choose(tmp_path, pattern)[:2] == (files, [2])


def test_one_span_written_two_ways_is_an_error_naming_both(tmp_path: Path) -> None:
    make(tmp_path, "span-1/a.csv", "span-01/b.csv", "span-2/a.csv")
    with pytest.raises(DataValidationError, match=r"span-01/b.csv and span-1/a.csv both hold span 1 .*\{SPAN:2\}"):
        choose(tmp_path, "span-{SPAN}/*.csv", "all")
    assert choose(tmp_path, "span-{SPAN}/*.csv")[:2] == (["span-2/a.csv"], [2])  # the span read is written once
    assert choose(tmp_path, "span-{SPAN:2}/*.csv", "all")[:2] == (["span-01/b.csv"], [1])


def test_a_span_wider_than_its_width_is_an_error_naming_file_and_pattern(tmp_path: Path) -> None:
    """span-100 under {SPAN:2} left unread would keep 'latest' on span 99 for ever, unseen."""
    make(tmp_path, "span-98/a.csv", "span-99/a.csv", "span-100/a.csv", "span-7/a.csv")
    with pytest.raises(DataValidationError, match=r"span-100/a.csv .* pattern 'span-\{SPAN:2\}/\*.csv'"):
        choose(tmp_path, "span-{SPAN:2}/*.csv")
    assert choose(tmp_path, "span-{SPAN:3}/*.csv")[:2] == (["span-100/a.csv"], [100])  # narrower names: other files


def test_a_width_of_zero_or_on_a_date_is_refused() -> None:
    for pattern in ("span-{SPAN:0}/*.csv", "{YYYY:2}{MM}{DD}.csv"):
        with pytest.raises(PipelineDefinitionError, match="a width it cannot take"):
            Pattern.parse(pattern)


def test_a_double_star_folder_also_takes_the_files_right_in_the_span(tmp_path: Path) -> None:
    make(tmp_path, "span-1/a.csv", "span-1/x/y/b.csv", "span-2/c.csv")
    assert choose(tmp_path, "span-{SPAN}/**/*.csv", 1)[0] == ["span-1/a.csv", "span-1/x/y/b.csv"]


def test_a_range_whose_last_span_is_missing_is_an_error(tmp_path: Path) -> None:
    make(tmp_path, "s1.csv", "s2.csv", "s4.csv")
    with pytest.raises(DataValidationError, match=r"span range 1-5 ends at span 5, .* the spans there are 1, 2, 4"):
        choose(tmp_path, "s{SPAN}.csv", [1, 5])
    assert choose(tmp_path, "s{SPAN}.csv", [1, 4])[1] == [1, 2, 4]  # a gap inside the range is no error


def test_a_folder_named_with_glob_characters_is_read_as_named(tmp_path: Path) -> None:
    make(tmp_path / "in[1]", "span-1/a.csv")
    make(tmp_path / "in1", "span-2/a.csv")
    assert choose(tmp_path / "in[1]", "span-{SPAN}/*.csv")[:2] == (["span-1/a.csv"], [1])


def test_only_ascii_digits_are_span_numbers(tmp_path: Path) -> None:
    make(tmp_path, "span-1/a.csv", "span-\u0661/b.csv")
    assert choose(tmp_path, "span-{SPAN}/*.csv", "all")[:2] == (["span-1/a.csv"], [1])
