"""Reading data in: streaming readers that yield Arrow record batches with bounded memory.

One module per format (``csv``, ``parquet``, ``jsonl``, ``avro``, ``sql``), ``files`` for
finding inputs (patterns, spans, versions) over any fsspec URL, ``hashing`` for the stable
row hash that splits rows, ``plan`` for the split rule and sources ExampleGen checks before it
reads anything, and ``ingest`` that puts them together for ExampleGen. Importing
this package loads nothing heavy; each module loads its own libraries.
"""
