"""Transform's memory stays bounded as row groups go by: the C library's freed memory is handed
back after each row group written, not kept in the worker threads' arenas until the step ends.
"""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor import Output, Pipeline, component
from conveyor._internal import memory
from conveyor.artifacts import Examples
from conveyor.components.schema_gen import SchemaGen
from conveyor.components.statistics_gen import StatisticsGen
from conveyor.components.transform import Transform

ROW_GROUP = 50


@component
def small_examples(examples: Output[Examples]) -> None:
    """400 rows in row groups of 50: 6 in train (two files), 2 in eval."""
    rng = np.random.default_rng(0)
    words = np.array(["late", "fee", "bank", "card", "loan", "credit", "report", "error"])
    table = pa.table({
        "amount": rng.normal(100, 30, 400),
        "state": rng.choice(["CA", "NY", "TX"], 400),
        "narrative": [" ".join(rng.choice(words, 12)) for _ in range(400)],
    })  # fmt: skip
    for name, part, files in (("train", table.slice(0, 300), 2), ("eval", table.slice(300), 1)):
        folder = Path(examples.uri) / f"Split-{name}"
        folder.mkdir()
        step = part.num_rows // files
        for f in range(files):
            pq.write_table(part.slice(f * step, step), folder / f"part-{f:05d}.parquet", row_group_size=ROW_GROUP)


def test_freed_memory_is_handed_back_after_each_row_group_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "preprocessing.py"
    module.write_text(textwrap.dedent("""
        import conveyor.transform as ct

        def preprocessing_fn(inputs):
            return {"amount": ct.scale_to_z_score(inputs["amount"]),
                    "state": ct.compute_and_apply_vocabulary(inputs["state"]),
                    "narrative": ct.tfidf(ct.split(inputs["narrative"]))}
    """))
    released = []
    real = memory.release_freed
    monkeypatch.setattr(memory, "release_freed", lambda: released.append(1) or real())
    gen = small_examples()
    stats = StatisticsGen(examples=gen.outputs["examples"])
    schema = SchemaGen(statistics=stats.outputs["statistics"])
    transform = Transform(gen.outputs["examples"], schema.outputs["schema"], str(module))
    run = Pipeline(name="memory", components=[gen, stats, schema, transform], root=tmp_path / "root").run()
    assert run.status == "succeeded"
    out = Path(run.executions["Transform"].outputs["transformed_examples"][0].uri)
    written = [pq.ParquetFile(f).metadata for f in sorted(out.glob("Split-*/*.parquet"))]
    assert [m.num_rows for m in written] == [100, 150, 150]  # eval, then train's two files
    assert sum(m.num_row_groups for m in written) == 8
    assert len(released) == 8  # once per row group: what one row group's apply freed goes back before the next


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(memory._MALLOC_TRIM is None, reason="the C library has no malloc_trim (not glibc)")
def test_release_freed_gives_a_threads_freed_memory_back() -> None:
    # 200 MB in 100 KB pieces (under glibc's mmap threshold: they live in the thread's arena);
    # every tenth is kept, so the freed pages lie between live ones and no free() returns them.
    kept: list[np.ndarray] = []

    def fragment() -> None:
        pieces = [np.ones(100_000, np.uint8) for _ in range(2_000)]
        kept.extend(pieces[::10])

    thread = threading.Thread(target=fragment)
    thread.start()
    thread.join()
    before = _rss()
    memory.release_freed()
    assert before - _rss() > 100 << 20
    assert len(kept) == 200
