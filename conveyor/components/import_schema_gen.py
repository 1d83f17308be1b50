"""ImportSchemaGen: a hand-written or hand-edited schema file, checked and brought into the pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

from conveyor.artifacts import Schema
from conveyor.dsl.component import Component
from conveyor.dsl.types import FilePath, Output, Parameter


class ImportSchemaGen(Component):
    """Check ``schema_file`` and copy it, comments and all, to ``<uri>/schema.yaml``.

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

        source = Path(schema_file)
        source = source / Schema.FILE if source.is_dir() else source
        loaded = SchemaModel.load(source)
        shutil.copyfile(source, Path(schema.uri) / Schema.FILE)
        schema.properties.update(num_features=len(loaded.features), source=str(source.resolve()))
        print(f"schema: {len(loaded.features)} features from {source}")
