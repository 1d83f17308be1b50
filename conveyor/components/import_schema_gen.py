"""ImportSchemaGen: a hand-written or hand-edited schema file, checked and brought into the pipeline."""

from __future__ import annotations

from pathlib import Path

from conveyor.artifacts import Schema
from conveyor.dsl.component import Component
from conveyor.dsl.types import FilePath, Output, Parameter


class ImportSchemaGen(Component):
    """Check ``schema_file`` and copy it, comments and all, to ``<uri>/schema.yaml`` (as UTF-8).

    The file's content is part of the cache key: an edit makes the step, and everything
    after it, run again.

    Args:
        schema: where ``schema.yaml`` goes.
        schema_file: the YAML schema to import (as SchemaGen writes it).

    Raises:
        DataValidationError: the file is not a valid schema; the message gives its line.

    Example:
        >>> schema = ImportSchemaGen(schema_file="schema/schema.yaml")
        >>> validator = ExampleValidator(statistics=stats.outputs["statistics"], schema=schema.outputs["schema"])
    """

    @staticmethod
    def execute(schema: Output[Schema], *, schema_file: Parameter[FilePath]) -> None:
        from conveyor.data.schema import Schema as SchemaModel
        from conveyor.data.schema import read_schema_text

        source = Path(schema_file)
        source = source / Schema.FILE if source.is_dir() else source
        text = read_schema_text(source)
        loaded = SchemaModel.from_yaml(text, source=str(source))
        # The text as written, re-encoded: a UTF-16 file becomes UTF-8, which every reader of the artifact expects.
        (Path(schema.uri) / Schema.FILE).write_text(text, encoding="utf-8", newline="")
        schema.properties.update(num_features=len(loaded.features), source=str(source.resolve()))
        print(f"schema: {len(loaded.features)} features from {source}")
