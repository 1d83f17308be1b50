"""The narratives' features and models: ``preprocessing_fn`` for Transform, ``run_fn`` for each Trainer.

Every Trainer runs the same ``run_fn``; its ``custom_config={"features": ...}`` says which of
the transformed outputs the logistic regression learns from: "tfidf", "embedding" or "both".
"""

from __future__ import annotations

import numpy as np

import conveyor.model
import conveyor.transform as ct

TEXT = "consumer_complaint_narrative"
LABEL = "product"
EMBEDDING = [f"minilm_{i}" for i in range(384)]  # the Embedder's columns: all-MiniLM-L6-v2 gives 384 values
FEATURES = {"tfidf": ["tfidf"], "embedding": ["embedding"], "both": ["tfidf", "embedding"]}
C = {"tfidf": 10.0, "embedding": 1.0, "both": 10.0}  # by 5-fold cross-validation over 1, 10 and 100 (compare.py)


def preprocessing_fn(inputs):
    """tf-idf of the narrative's words (lower case, letters and digits) seen in 2 training rows or more;
    the embedding's 384 columns stacked as one; the label as it is.
    """
    text = ct.lower(ct.fill_missing(inputs[TEXT]))
    words = ct.split(ct.regex_replace(text, r"[^a-z0-9]+", " "))
    return {
        "tfidf": ct.tfidf(words, frequency_threshold=2, sublinear_tf=True),
        "embedding": ct.stack([inputs[name] for name in EMBEDDING]),
        LABEL: inputs[LABEL],
    }


def run_fn(fn_args):
    """A multinomial logistic regression on the outputs ``FEATURES[custom_config["features"]]`` names;
    eval AUC (macro, one class against the rest) and accuracy logged; saved over every column.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    features = fn_args.custom_config["features"]
    columns = output_columns(fn_args.transform_graph, FEATURES[features], fn_args.label_key)
    X, y = fn_args.train_data()
    X_eval, y_eval = fn_args.eval_data()
    model = LogisticRegression(C=fn_args.train_args.get("C", C[features]), max_iter=3000).fit(X[:, columns], y)
    scores = model.predict_proba(X_eval[:, columns])
    auc = roc_auc_score(y_eval, scores, multi_class="ovr", average="macro", labels=model.classes_)
    accuracy = float(np.mean(model.classes_[scores.argmax(1)] == y_eval))
    step = int(model.n_iter_[0])
    fn_args.log_metric("eval_auc", auc, step=step)
    fn_args.log_metric("eval_accuracy", accuracy, step=step)
    print(f"{features}: eval AUC {auc:.4f}, accuracy {accuracy:.3f} on {len(y_eval)} narratives")
    conveyor.model.save(widen(model, columns, X.shape[1]), fn_args)


def output_columns(transform_graph, outputs, label):
    """The matrix's column numbers of ``outputs``: the graph's outputs lie side by side in its order, the label left out."""
    start, columns = 0, []
    for name, spec in ct.load(transform_graph).describe().items():
        if name == label:
            continue
        width = spec.get("width") or 1
        if name in outputs:
            columns.extend(range(start, start + width))
        start += width
    return np.array(columns)


def widen(model, columns, width):
    """The same model over all ``width`` columns, its weights 0 on those it did not learn from:
    the bundle then takes raw rows through the whole graph and predicts exactly as ``model`` does.
    """
    coef = np.zeros((model.coef_.shape[0], width))
    coef[:, columns] = model.coef_
    model.coef_, model.n_features_in_ = coef, width
    return model
