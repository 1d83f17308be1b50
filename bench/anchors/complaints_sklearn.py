"""The complaints model as a scikit-learn Pipeline on the raw columns: the model MLServer and
the Flask app serve in ``serve_bench.py``.

The same work as conveyor's graph without text (``transform_workload``): the eight categorical
columns one-hot (a missing value a category of its own), the ZIP area in 10 quantile buckets,
z-score and min-max of the four numbers; then the same classifier with the same settings as
``train_bench``'s Trainer. It runs inside MLServer's virtualenv, which holds scikit-learn,
pandas and LightGBM but not conveyor: the pipeline is fitted and saved there with joblib, and
``zip3`` must be importable wherever it is loaded (MLServer and Flask get this folder on
``PYTHONPATH``).

    python complaints_sklearn.py TRAIN.csv ROWS {logistic|lightgbm} OUT.joblib
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

CATEGORICAL = [
    "product",
    "sub_product",
    "issue",
    "sub_issue",
    "company",
    "state",
    "company_response",
    "timely_response",
]
NUMERIC = ["amount", "score", "n_calls", "age_days"]
LABEL = "consumer_disputed"
ZIP_BUCKETS = 10
MAX_ITER, N_ESTIMATORS, SEED = 50, 20, 0  # train_bench's


def zip3(frame: Any) -> Any:
    """The ZIP area: the first three characters as a number."""
    return frame.iloc[:, 0].str.slice(0, 3).astype("float64").to_frame()


def make_pipeline(model: str) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.pipeline import make_pipeline as chain
    from sklearn.preprocessing import FunctionTransformer, KBinsDiscretizer, MinMaxScaler, OneHotEncoder, StandardScaler

    bins = KBinsDiscretizer(n_bins=ZIP_BUCKETS, encode="ordinal", strategy="quantile", subsample=None)
    features = ColumnTransformer(
        [
            (
                "onehot",
                chain(
                    SimpleImputer(strategy="constant", fill_value="__missing__"), OneHotEncoder(handle_unknown="ignore")
                ),
                CATEGORICAL,
            ),
            ("zip", chain(FunctionTransformer(zip3), bins), ["zip_code"]),
            ("z", StandardScaler(), NUMERIC),
            ("01", MinMaxScaler(), NUMERIC),
        ],
        sparse_threshold=1.0,
    )
    if model == "logistic":
        from sklearn.linear_model import LogisticRegression

        classifier: Any = LogisticRegression(max_iter=MAX_ITER, random_state=SEED)
    else:
        from lightgbm import LGBMClassifier

        classifier = LGBMClassifier(
            n_estimators=N_ESTIMATORS, n_jobs=1, random_state=SEED, deterministic=True, verbose=-1
        )
    return Pipeline([("features", features), ("model", classifier)])


def main() -> int:
    import joblib
    import pandas as pd
    from complaints_sklearn import make_pipeline  # zip3 pickled by its module's name, not as __main__.zip3
    from sklearn.exceptions import ConvergenceWarning

    csv, rows, model, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    strings = {name: str for name in [*CATEGORICAL, "zip_code"]}
    frame = pd.read_csv(csv, nrows=rows, dtype=strings, usecols=[*CATEGORICAL, "zip_code", *NUMERIC, LABEL])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # MAX_ITER stops it on purpose, as in train_bench
        fitted = make_pipeline(model).fit(frame.drop(columns=[LABEL]), frame[LABEL])
    joblib.dump(fitted, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
