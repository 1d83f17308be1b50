"""The public surface is small and deliberate: ``__all__`` is exactly what the package exports."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import conveyor
import conveyor.artifacts


def test_all_is_the_public_api() -> None:
    public = {n for n in dir(conveyor) if not n.startswith("_") and not isinstance(getattr(conveyor, n), ModuleType)}
    assert set(conveyor.__all__) - {"__version__", "MetadataStore"} == public
    for name in conveyor.__all__:
        assert getattr(conveyor, name) is not None


def test_contract_artifact_types_exist() -> None:
    for name in ("Artifact", "Examples", "ExampleStatistics", "Schema", "ExampleAnomalies", "TransformGraph",
                 "Model", "ModelRun", "HyperParameters", "ModelEvaluation", "ModelBlessing", "InfraBlessing", "PushedModel"):
        cls = getattr(conveyor.artifacts, name)
        art = cls("/x", id=1, properties={"a": 1})
        assert (art.type_name, art.id, art.uri, art.properties, art.fingerprint) == (name, 1, "/x", {"a": 1}, None)


def test_import_is_cheap() -> None:
    code = (
        "import sys, conveyor; heavy = {'sqlalchemy', 'pyarrow', 'polars', 'numpy', 'rich', 'click', 'sklearn', 'torch', 'fastapi'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_standard_components_import_from_the_contract_path() -> None:
    import conveyor.components as components

    for name in components.__all__:
        cls = getattr(components, name)
        assert cls.__name__ == name
        assert cls.component_spec().outputs, name
    assert set(components.__all__) >= {"ExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator", "Transform"}
