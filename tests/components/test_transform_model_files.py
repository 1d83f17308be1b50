"""Transform and the ONNX files its module passes to ``ct.apply_model``: they are named by
the module's code, not by a parameter, yet an edited model must run Transform again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.transform.test_component import ADULT_SCHEMA, transform_pipeline

pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper

from tests.transform.test_onnx_model import B, W, linear, save_model

MODULE = """\
    import conveyor.transform as ct

    def preprocessing_fn(inputs):
        age = ct.scale_to_z_score(inputs["age"])
        hours = ct.scale_to_0_1(inputs["hours_per_week"])
        education = ct.cast(ct.compute_and_apply_vocabulary(inputs["education"]), "float")
        return {"encoded": ct.apply_model("encoder.onnx", [age, hours, education])}
"""


def run(tmp_path: Path) -> dict[str, str]:
    done = transform_pipeline(tmp_path, MODULE, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 300}).run()
    assert done.status == "succeeded", {k: e.error for k, e in done.executions.items()}
    return {k: e.status for k, e in done.executions.items()}


def test_an_edited_onnx_model_runs_transform_again(tmp_path: Path) -> None:
    model = linear(tmp_path / "encoder.onnx")  # beside the module file, named by a relative path
    assert run(tmp_path)["Transform"] == "succeeded"
    assert run(tmp_path) == {"raw_examples": "cached", "ImportSchemaGen": "cached", "Transform": "cached"}
    save_model(  # the same layer with other weights: same inputs, same output, other numbers
        model,
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        {"W": 2 * W, "b": B},
    )
    assert run(tmp_path) == {"raw_examples": "cached", "ImportSchemaGen": "cached", "Transform": "succeeded"}
    assert run(tmp_path)["Transform"] == "cached"


def test_the_execution_records_the_model_file_it_traced(tmp_path: Path) -> None:
    model = linear(tmp_path / "encoder.onnx").resolve()
    done = transform_pipeline(tmp_path, MODULE, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 300}).run()
    # apply_model looks in the working directory first, and finds nothing there: that is recorded too.
    assert done.executions["Transform"].discovered_files == {
        str(Path.cwd() / "encoder.onnx"): None,
        str(model): hashlib.sha256(model.read_bytes()).hexdigest(),
    }


def test_a_model_put_where_apply_model_looks_first_runs_transform_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    linear(tmp_path / "encoder.onnx")
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    assert run(tmp_path)["Transform"] == "succeeded"
    assert run(tmp_path)["Transform"] == "cached"
    linear(workdir / "encoder.onnx")  # now found first: the graph would use this one
    assert run(tmp_path)["Transform"] == "succeeded"


HELPED = """\
    import conveyor.transform as ct
    from features import scaled

    def preprocessing_fn(inputs):
        return {"age": scaled(inputs["age"])}
"""


def test_an_edited_helper_module_runs_transform_again(tmp_path: Path) -> None:
    """A module the module file imports from beside it, and one that module imports in turn,
    are this step's code: editing either runs Transform again; an installed package is not declared.
    """
    (tmp_path / "features.py").write_text("import numpy\nimport conveyor.transform as ct\nfrom constants import LOW\n\ndef scaled(x):\n    return ct.clip(ct.scale_to_z_score(x), LOW, 3)\n")
    (tmp_path / "constants.py").write_text("LOW = -3\n")
    pipeline = transform_pipeline(tmp_path, HELPED, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 300})
    first = pipeline.run()
    assert first.executions["Transform"].status == "succeeded", first.executions["Transform"].error
    assert sorted(Path(p).name for p in first.executions["Transform"].discovered_files) == ["constants.py", "features.py"]
    assert pipeline.run().executions["Transform"].status == "cached"
    (tmp_path / "constants.py").write_text("LOW = -2\n")
    assert pipeline.run().executions["Transform"].status == "succeeded"
    assert pipeline.run().executions["Transform"].status == "cached"
