"""The workload of the Transform benchmark, the same on every side: the columns, conveyor's
``preprocessing_fn`` and the scikit-learn ``ColumnTransformer`` that does the same work.
"""

from __future__ import annotations

from typing import Any

from stats_bench import ROOT

WORK = ROOT / "bench" / "out" / "transform"
CATEGORICAL = (
    "product",
    "sub_product",
    "issue",
    "sub_issue",
    "company",
    "state",
    "company_response",
    "timely_response",
)
NUMERIC = ("amount", "score", "n_calls", "age_days")
TEXT = "consumer_complaint_narrative"
ZIP_BUCKETS = 10
TERMS = 10_000


def columns(text: bool) -> list[str]:
    return [*CATEGORICAL, "zip_code", *NUMERIC, *([TEXT] if text else [])]


def make_preprocessing_fn(text: bool) -> Any:
    import conveyor.transform as ct

    def preprocessing_fn(inputs: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in CATEGORICAL:
            # A missing value is a category of its own, as OneHotEncoder makes it.
            out[f"{name}_onehot"] = ct.one_hot(ct.compute_and_apply_vocabulary(ct.fill_missing(inputs[name])))
        out["zip_bucket"] = ct.bucketize(ct.to_number(ct.substr(inputs["zip_code"], 0, 3)), ZIP_BUCKETS)
        for name in NUMERIC:
            out[f"{name}_z"] = ct.scale_to_z_score(inputs[name])
        for name in NUMERIC:
            out[f"{name}_01"] = ct.scale_to_0_1(inputs[name])
        if text:
            out["narrative_tfidf"] = ct.tfidf(ct.split(ct.lower(inputs[TEXT])), top_k=TERMS)
        return out

    return preprocessing_fn


def _zip3(frame: Any) -> Any:
    return frame.iloc[:, 0].str.slice(0, 3).astype("float64").to_frame()


def make_column_transformer(text: bool) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, KBinsDiscretizer, MinMaxScaler, OneHotEncoder, StandardScaler

    bins = {"n_bins": ZIP_BUCKETS, "strategy": "quantile", "encode": "ordinal", "subsample": None}
    try:
        KBinsDiscretizer(quantile_method="linear")
        bins["quantile_method"] = "linear"  # NumPy's default rule, as ct.quantiles
    except TypeError:  # scikit-learn before 1.7
        pass
    parts: list[tuple[str, Any, Any]] = [
        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=True), list(CATEGORICAL)),
        ("zip", make_pipeline(FunctionTransformer(_zip3), KBinsDiscretizer(**bins)), ["zip_code"]),
        ("z", StandardScaler(), list(NUMERIC)),
        ("01", MinMaxScaler(), list(NUMERIC)),
    ]
    if text:
        vectorizer = TfidfVectorizer(max_features=TERMS, lowercase=True, token_pattern=None, tokenizer=str.split)
        parts.append(("tfidf", vectorizer, TEXT))
    return ColumnTransformer(parts, sparse_threshold=1.0)
