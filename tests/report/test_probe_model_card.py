"""The model card of a real model in a real store: its numbers are scikit-learn's, its text is escaped, and a failed
evaluation is named on the card instead of stopping it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

import conveyor.model
from conveyor import Output, component
from conveyor.analysis import EvalConfig
from conveyor.artifacts import Examples, Model
from conveyor.cli.model_card import gather
from conveyor.components import Evaluator
from conveyor.exceptions import ComponentError
from conveyor.interactive import InteractiveContext
from conveyor.model import load_model, to_matrix
from conveyor.report.model_card import model_card_html, model_card_markdown
from conveyor.report.page import format_number
from tests.model import graphs

LABEL = graphs.TARGETS["binary"]
HOSTILE = "<script>alert(1)</script>"  # a column and a value a card must show as text, never run


def rows(split: str) -> pa.Table:
    table = graphs.table(90, seed=0 if split == "train" else 1)
    return table.append_column(HOSTILE, pa.array(np.where(np.arange(len(table)) % 3 == 0, HOSTILE, "b&b")))


@component
def hostile_examples(examples: Output[Examples]) -> None:
    for split in ("train", "eval"):
        folder = Path(examples.uri) / f"Split-{split}"
        folder.mkdir()
        pq.write_table(rows(split), folder / "part-0.parquet")


@component
def logistic_model(model: Output[Model]) -> None:
    graph = graphs.fitted("binary", sparse=False)
    columns = graph.apply(rows("train"))
    matrix, _ = to_matrix(columns, graph.describe(), LABEL)
    fitted = LogisticRegression().fit(matrix, np.asarray(columns[LABEL]))
    with tempfile.TemporaryDirectory() as folder:
        graph.save(Path(folder))
        conveyor.model.save(fitted, path=model.uri, transform_graph=folder, label=LABEL)


def evaluate(context: InteractiveContext, examples: object, model: object, label: str) -> None:
    config = EvalConfig(label_key=label, slicing_specs=[[], [HOSTILE]])
    context.run(Evaluator(examples=examples, model=model, eval_config=config))


def test_a_card_names_a_failed_evaluation_and_its_numbers_are_sklearns(tmp_path: Path) -> None:
    with InteractiveContext(root=tmp_path / "root") as context:
        made = hostile_examples()
        context.run(made)
        examples = made.outputs["examples"]
        trained = logistic_model()
        [model] = context.run(trained).outputs["model"]
        with pytest.raises(ComponentError):
            evaluate(context, examples, trained.outputs["model"], "no_such_label")

        failed_only = gather(context.store, model)  # the only evaluation failed: the card says so
        markdown = model_card_markdown(failed_only)
        assert "## Evaluations that did not finish" in markdown
        assert "no_such_label" in markdown
        assert "no evaluation finished" in markdown
        assert "failed" in model_card_html(failed_only)

        evaluate(context, examples, trained.outputs["model"], LABEL)
        card = gather(context.store, model)
        assert card["unfinished_evaluations"] == []  # the failure is older than the evaluation shown
        with pytest.raises(ComponentError):
            evaluate(context, examples, trained.outputs["model"], "no_such_label")
        newer_failure = gather(context.store, model)  # the metrics shown are the last that finished, and it says so
        assert [u["status"] for u in newer_failure["unfinished_evaluations"]] == ["failed"]
        assert newer_failure["evaluation"] == card["evaluation"]

    eval_rows = rows("eval")
    probability = load_model(model.uri).predict(eval_rows)["probability"]
    truth = np.asarray(eval_rows[LABEL])
    markdown = model_card_markdown(card)
    hostile_slice = r"\<script\>alert(1)\</script\>="  # the slice `<script>...=<script>...` as Markdown text
    for start, mask in (
        ("| Overall |", np.ones(len(truth), bool)),
        (f"| {hostile_slice}", np.arange(len(truth)) % 3 == 0),
    ):
        line = next(x for x in markdown.splitlines() if x.startswith(start))
        cells = line.strip("|").split(" | ")
        assert cells[1].strip() == str(int(mask.sum()))
        assert format_number(accuracy_score(truth[mask], probability[mask] > 0.5)) in cells
        assert format_number(roc_auc_score(truth[mask], probability[mask])) in cells
    html = model_card_html(card)
    assert "<script>" not in html.split("</style>", 1)[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
