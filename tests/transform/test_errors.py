"""Errors in ``preprocessing_fn`` and its module file point at the user's own file and line."""

from __future__ import annotations

import operator
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import conveyor.transform as ct
from conveyor.components.transform import load_preprocessing_fn
from conveyor.exceptions import TransformError
from conveyor.transform.graph import Inputs, trace
from tests.transform.test_component import ADULT_SCHEMA, transform_pipeline

KINDS = {"age": "number", "hours_per_week": "number", "education": "string", "workclass": "string"}
TEMPLATE = """\
import math
import sys

import numpy as np

import conveyor.transform as ct


def preprocessing_fn(inputs):
    x = inputs["age"]
    {line}  # the line at fault
    return {{"x": ct.scale_to_z_score(x)}}
"""


def module(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my_module.py"
    path.write_text(textwrap.dedent(text))
    return path


def line_of(path: Path, marker: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('y = inputs["agee"]', "column 'agee' is not in the schema; did you mean 'age'?"),
        ('y = inputs["salary"]', "column 'salary' is not in the schema; the schema has ['age', 'education', 'hours_per_week', 'workclass']."),
        ('y = ct.scale_to_z_score(inputs["education"])', "ct.scale_to_z_score takes a number or bool column, got a string column"),
        ("y = ct.lower(x)", "ct.lower takes a string column, got a number column"),
        ('y = x + inputs["education"]', "'add' does not apply to a string column"),
        ("y = ct.bucketize(x, 1)", "ct.quantiles needs num_buckets >= 2, got 1."),
        (
            'y = ct.regex_replace(inputs["education"], "(?<=a)b", "")',
            "ct.regex_replace cannot use '(?<=a)b' -> '': Invalid regular expression: invalid perl operator: (?<=",
        ),
        ('y = ct.regex_replace(inputs["education"], "(a", "")', "Invalid regular expression: missing ): "),
        ('y = ct.regex_replace(inputs["education"], "(a)", r"\\2")', "Rewrite schema requests 2 matches"),
        ('y = ct.regex_replace(inputs["education"], "a", None)', "needs a pattern and a replacement that are strings"),
        ("if x > 0: pass", "a symbolic column has no truth value here (an `if` or `and` on a column?); use ct.where(condition, a, b)."),
        ("y = np.log(x)", "numpy.log cannot run on a symbolic column; use the conveyor.transform op instead."),
        ("y = x.lower()", "a symbolic column has no method .lower(); use ct.lower(x) if conveyor.transform has it."),
        ("y = float(x)", "float() (or math.*) of a symbolic column cannot be traced; use ct.cast(x, 'float')"),
        ("y = math.log(x)", "float() (or math.*) of a symbolic column cannot be traced"),
        ("y = int(x)", "int() of a symbolic column cannot be traced; use ct.cast(x, 'int')."),
        (
            "y = len(x)",
            "len() of a symbolic column is not known while tracing (it stands for every row); count each row's "
            "tokens with ct.word_count(ct.split(x)), or summarize the column with an analyzer (ct.mean, ct.vocabulary).",
        ),
        ("y = [v for v in x]", "a symbolic column cannot be looped over in Python"),
        ("y = 1 / 0", "preprocessing_fn raised ZeroDivisionError: division by zero"),
        ("y = abs(x)", "preprocessing_fn raised TypeError: bad operand type for abs(): 'Column'"),
        ("sys.exit(3)", "preprocessing_fn raised SystemExit: 3"),  # not the end of the process
    ],
)
def test_a_tracing_error_names_the_users_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = module(tmp_path, TEMPLATE.format(line=line))
    with pytest.raises(TransformError) as e:
        trace(load_preprocessing_fn(str(path)), KINDS)
    assert str(e.value).startswith(f"{path}:{line_of(path, 'the line at fault')}: ")
    assert message in str(e.value)


@pytest.mark.parametrize(
    "misuse",
    [bool, iter, len, float, int, operator.index, round, np.asarray, np.log, lambda x: x.lower()],
)
def test_the_ops_an_error_suggests_exist(misuse: Callable[[Any], Any]) -> None:
    """Every ``ct.<name>`` a symbolic column's error points at is in ``conveyor.transform``."""
    x = Inputs(KINDS)["age"]
    with pytest.raises(TransformError) as e:
        misuse(x)
    named = set(re.findall(r"\bct\.(\w+)", str(e.value)))
    assert named <= set(ct.__all__), named - set(ct.__all__)


def test_a_bad_return_value_names_the_function(tmp_path: Path) -> None:
    path = module(tmp_path, "def preprocessing_fn(inputs):\n    return [inputs['age']]\n")
    with pytest.raises(TransformError, match=re.escape(f"{path}:1: preprocessing_fn must return a non-empty dict of output name to column, got list.")):
        trace(load_preprocessing_fn(str(path)), KINDS)
    path = module(tmp_path, "def preprocessing_fn(inputs):\n    return {'age': 3}\n")
    with pytest.raises(TransformError, match=re.escape(f"{path}:1: preprocessing_fn's output 'age' is int, not a column made from the inputs.")):
        trace(load_preprocessing_fn(str(path)), KINDS)


def test_an_analyzer_result_is_not_an_output(tmp_path: Path) -> None:
    path = module(tmp_path, "import conveyor.transform as ct\n\ndef preprocessing_fn(inputs):\n    return {'m': ct.mean(inputs['age'])}\n")
    with pytest.raises(TransformError, match=re.escape(f"{path}:4: preprocessing_fn's output 'm' is an analyzer's result")):
        trace(load_preprocessing_fn(str(path)), KINDS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("def preprocesing_fn(inputs):\n    return {}\n", "{path}: defines no preprocessing_fn(inputs), which Transform calls. Did you mean 'preprocesing_fn'?"),
        ("def run_fn(args):\n    pass\n", "{path}: defines no preprocessing_fn(inputs), which Transform calls. It defines ['run_fn']."),
        ("import conveyor.transform as ct\n\ndef preprocessing_fn(inputs)\n    return {}\n", "{path}:3: the module file does not parse: expected ':'. Fix it and run again."),
        ("import conveyor.transform as ct\nimport not_a_module\n", "{path}:2: importing the module file raised ModuleNotFoundError: No module named 'not_a_module'"),
    ],
)
def test_a_bad_module_file_is_named_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = module(tmp_path, text)
    with pytest.raises(TransformError) as e:
        load_preprocessing_fn(str(path))
    assert str(e.value).startswith(message.format(path=path))


def test_the_transform_component_reports_the_users_line(tmp_path: Path) -> None:
    text = TEMPLATE.format(line='y = inputs["hours_per_wek"]')
    run = transform_pipeline(tmp_path, text, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 300}).run()
    assert run.status == "failed"
    path = tmp_path / "module.py"
    error = (run.executions["Transform"].error or "").splitlines()[0]
    assert error == (
        f"TransformError: {path}:{line_of(path, 'the line at fault')}: "
        "column 'hours_per_wek' is not in the schema; did you mean 'hours_per_week'?"
    )


@pytest.mark.parametrize("where", ["preprocessing_fn", "the top of the module"])
def test_sys_exit_in_a_module_file_fails_the_transform_step_with_its_line(tmp_path: Path, where: str) -> None:
    text = TEMPLATE.format(line="sys.exit(3)")
    if where != "preprocessing_fn":
        text = TEMPLATE.format(line="pass").replace("import sys\n", "import sys\nsys.exit(3)  # the line at fault\n")
    run = transform_pipeline(tmp_path, text, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 300}).run()
    assert run.status == "failed"
    path = tmp_path / "module.py"
    error = (run.executions["Transform"].error or "").splitlines()[0]
    assert error.startswith(f"TransformError: {path}:{line_of(path, 'the line at fault')}: ")
    assert error.endswith("raised SystemExit: 3")


def test_the_transform_component_reports_a_module_that_does_not_parse(tmp_path: Path) -> None:
    run = transform_pipeline(tmp_path, "def preprocessing_fn(inputs):\n  return {\n", ADULT_SCHEMA, "adult/adult.csv", data={"rows": 300}).run()
    assert run.status == "failed"
    error = (run.executions["Transform"].error or "").splitlines()[0]
    assert error.startswith(f"TransformError: {tmp_path / 'module.py'}:2: the module file does not parse: ")


def test_a_required_column_missing_from_the_examples_is_named(tmp_path: Path) -> None:
    text = TEMPLATE.format(line='y = inputs["education"]').replace('return {"x"', 'return {"e": ct.compute_and_apply_vocabulary(y), "x"')
    run = transform_pipeline(tmp_path, text, ADULT_SCHEMA, "adult/adult.csv", data={"rows": 300, "drop": ["education"]}).run()
    assert run.status == "failed"
    error = (run.executions["Transform"].error or "").splitlines()[0]
    assert re.fullmatch(
        r"TransformError: Transform: \S+/Split-train/part-00000\.parquet \(split 'train'\) lacks \['education'\], "
        r"which preprocessing_fn reads and the schema requires\.",
        error,
    ), error
