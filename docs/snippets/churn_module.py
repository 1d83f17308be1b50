"""The module file of the components guide: ``preprocessing_fn`` for Transform, ``run_fn`` for the Trainer."""

from __future__ import annotations

import conveyor.model
import conveyor.transform as ct

LABEL = "churned"


# --8<-- [start:preprocessing_fn]
def preprocessing_fn(inputs):
    """Numbers scaled by the training split's mean and std, the plan one-hot, the label as is."""
    return {
        "monthly_fee": ct.scale_to_z_score(inputs["monthly_fee"]),
        "tenure_months": ct.scale_to_z_score(inputs["tenure_months"]),
        "plan": ct.one_hot(ct.compute_and_apply_vocabulary(ct.fill_missing(inputs["plan"]), num_oov_buckets=1)),
        LABEL: inputs[LABEL],
    }


# --8<-- [end:preprocessing_fn]


# --8<-- [start:run_fn]
def run_fn(fn_args):
    """A logistic regression on the transformed training split, saved as a bundle that takes raw rows."""
    from sklearn.linear_model import LogisticRegression

    X, y = fn_args.train_data()
    model = LogisticRegression(C=fn_args.hyperparameters.get("C", 1.0)).fit(X, y)
    X_eval, y_eval = fn_args.eval_data()
    fn_args.log_metric("eval_accuracy", float((model.predict(X_eval) == y_eval).mean()), step=int(model.n_iter_[0]))
    conveyor.model.save(model, fn_args)


# --8<-- [end:run_fn]


# --8<-- [start:tuner_fn]
def tuner_fn(fn_args):
    """The Tuner's search: the regularisation C, scored by eval accuracy."""
    from sklearn.linear_model import LogisticRegression

    from conveyor.training import Search

    def objective(trial, fn_args):
        X, y = fn_args.train_data()
        model = LogisticRegression(C=trial.suggest_float("C", 1e-3, 1e2, log=True)).fit(X, y)
        X_eval, y_eval = fn_args.eval_data()
        return float((model.predict(X_eval) == y_eval).mean())

    return Search(objective)


# --8<-- [end:tuner_fn]
