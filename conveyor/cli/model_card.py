"""What ``conveyor show MODEL_ID --model-card OUT`` finds in the store for a model's card.

The model's lineage gives the Examples it came from (with their fingerprints) and the
Trainer's parameters; the newest Evaluator that judged it as its candidate and finished gives
the metrics by slice, fairness, the blessing and the considerations recorded from
``EvalConfig(model_card=...)``; newer ones that failed are named with their error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.exceptions import ArtifactError

if TYPE_CHECKING:
    from conveyor.artifacts import Artifact
    from conveyor.metadata.store import MetadataStore

METRICS_FILE = "metrics.json"
DATA_PROPERTIES = (
    "row_counts",
    "span",
    "spans",
    "version",
)  # and the fingerprint: ExampleGen's of the content, else the store's


def gather(store: MetadataStore, model: Artifact) -> dict[str, Any]:
    """The card's dict (see ``conveyor.report.model_card``) for a Model artifact.

    Raises:
        ArtifactError: the artifact is not a Model, or its bundle has no manifest.
    """
    from conveyor.model.bundle import read_manifest

    if model.type_name != "Model":
        msg = f"--model-card takes a Model artifact; artifact {model.id} is {model.type_name}."
        raise ArtifactError(msg)
    if model.state != "LIVE":
        msg = (
            f"Model {model.id} is {model.state}: the step that made it did not finish, so there is no bundle to "
            f"describe; `conveyor show {model.id}` names its run."
        )
        raise ArtifactError(msg)
    manifest = read_manifest(Path(model.uri))
    upstream = store.lineage(model.id, "upstream")
    made_by = store.producer(model.id)
    data = [
        {
            "id": a.id,
            "uri": a.uri,
            **{k: a.properties.get(k) for k in DATA_PROPERTIES},
            "fingerprint": a.properties.get("fingerprint") or a.fingerprint,
        }
        for a in sorted(upstream.artifacts.values(), key=lambda a: a.id)
        if a.type_name == "Examples"
    ]
    evaluation, blessing, unfinished = _latest_evaluation(store, model.id)
    metrics = _metrics(evaluation.uri) if evaluation is not None else {}
    return {
        "title": f"Model card · Model {model.id}" + (f" · {made_by.component_id}, {made_by.run_id}" if made_by else ""),
        "model": {
            "id": model.id, "uri": model.uri, "flavor": manifest.get("flavor"), "task": manifest.get("task"),
            "label": manifest.get("label"), "classes": manifest.get("classes"), "created": manifest.get("created"),
            "inputs": list((manifest.get("signature") or {}).get("inputs") or {}),
            "privacy": manifest.get("privacy"),
        },
        "considerations": metrics.get("model_card") or {},
        "data": data,
        "training": {
            "component_id": made_by.component_id if made_by else None,
            "run_id": made_by.run_id if made_by else None,
            "parameters": made_by.parameters if made_by else {},
        },
        "evaluation": {"id": evaluation.id, "metrics": metrics} if evaluation is not None else None,
        "unfinished_evaluations": unfinished,
        "blessing": {"id": blessing.id, **{k: blessing.properties.get(k) for k in ("blessed", "checks")}}
        if blessing is not None
        else None,
    }  # fmt: skip


def _latest_evaluation(
    store: MetadataStore, model_id: int
) -> tuple[Artifact | None, Artifact | None, list[dict[str, Any]]]:
    """The evaluation and blessing of the newest finished execution that took the model as its candidate (input
    ``model``), and the newer evaluations that failed or still run: the card says so rather than stop at them.
    """
    downstream = store.lineage(model_id, "downstream", max_hops=1)
    judged = sorted(
        (
            e.execution_id
            for e in downstream.edges
            if e.type == "INPUT" and e.artifact_id == model_id and e.key == "model"
        ),
        reverse=True,
    )
    unfinished = []
    for execution_id in judged:
        outputs = {a.type_name: a for _, a in downstream.outputs_of(execution_id)}
        if "ModelEvaluation" not in outputs:
            continue
        if outputs["ModelEvaluation"].state == "LIVE":
            return outputs["ModelEvaluation"], outputs.get("ModelBlessing"), unfinished
        execution = store.execution(execution_id)
        error = (execution.error or "").strip().splitlines()
        unfinished.append({
            "execution": execution.id, "component_id": execution.component_id, "run_id": execution.run_id,
            "status": execution.status, "error": error[0] if error else None,
        })  # fmt: skip
    return None, None, unfinished


def _metrics(uri: str) -> dict[str, Any]:
    path = Path(uri) / METRICS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        msg = f"Cannot read {path}: {e}"
        raise ArtifactError(msg) from e
