"""Text to the model's tokens: ``encode`` for any list of texts, and ``Tokenize``, a pipeline step.

The ONNX sentence model (export_model.py) takes token ids, not text: its tokenizer is a
Hugging Face ``tokenizer.json`` run by the ``tokenizers`` library, outside the graph. Every row
gets exactly ``max_tokens`` ids (truncated, or padded with 0 and a 0 in the mask), so the
columns are of fixed width, as the Embedder and its feature library need.
"""

from __future__ import annotations

from pathlib import Path

from conveyor import FilePath, Input, Output, Parameter, component
from conveyor.artifacts import Examples

MAX_TOKENS = 128  # all-MiniLM-L6-v2 was trained on 128 word pieces; twice that takes over twice the time


def encode(tokenizer_file: str | Path, texts: list[str], max_tokens: int = MAX_TOKENS):
    """(input_ids, attention_mask): int64 arrays of (len(texts), ``max_tokens``)."""
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.enable_padding(length=max_tokens)
    encoded = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64).reshape(len(texts), max_tokens)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64).reshape(len(texts), max_tokens)
    return ids, mask


@component
def Tokenize(
    examples: Input[Examples],
    tokenized: Output[Examples],
    *,
    tokenizer_file: Parameter[FilePath],
    column: Parameter[str],
    max_tokens: Parameter[int] = MAX_TOKENS,
) -> None:
    """Every row with its text ``column`` as ``input_ids`` and ``attention_mask``, lists of ``max_tokens`` int64.

    The same splits, files and rows in the same order, one row group at a time; a missing
    text is tokenized as an empty one.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.artifacts import split_dir
    from conveyor.data.examples import read_row_group, row_groups, split_files, split_names

    splits = split_names(examples.uri)
    counts = dict.fromkeys(splits, 0)
    tokens = pa.list_(pa.int64(), max_tokens)
    for split in splits:
        for file in split_files(examples.uri, split):
            target = split_dir(tokenized.uri, split) / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            schema = (
                pq.read_schema(file).append(pa.field("input_ids", tokens)).append(pa.field("attention_mask", tokens))
            )
            with pq.ParquetWriter(target, schema) as writer:
                for part in row_groups([file]):
                    table = read_row_group(part)
                    texts = [text or "" for text in table.column(column).to_pylist()]
                    ids, mask = encode(tokenizer_file, texts, max_tokens)
                    for name, values in (("input_ids", ids), ("attention_mask", mask)):
                        table = table.append_column(name, pa.FixedSizeListArray.from_arrays(values.ravel(), max_tokens))
                    writer.write_table(table)
                    counts[split] += table.num_rows
    carried = {k: examples.properties[k] for k in ("span", "spans", "version") if k in examples.properties}
    tokenized.properties.update(split_names=splits, row_counts=counts, max_tokens=max_tokens, **carried)
    print(f"{sum(counts.values())} texts of {column!r} tokenized to {max_tokens} word pieces each")
