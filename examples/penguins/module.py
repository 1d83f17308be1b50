"""The penguins' preprocessing and training: ``preprocessing_fn`` for Transform, ``run_fn`` for the Trainer."""

from __future__ import annotations

import conveyor.model
import conveyor.transform as ct

MEASURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def preprocessing_fn(inputs):
    """Measures scaled (missing ones stay NaN: LightGBM splits on them), island and sex one-hot, the label as is."""
    out = {name: ct.scale_to_z_score(inputs[name]) for name in MEASURES}
    for name in ("island", "sex"):
        out[name] = ct.one_hot(ct.compute_and_apply_vocabulary(ct.fill_missing(inputs[name], "unknown")))
    out["species"] = inputs["species"]
    return out


def run_fn(fn_args):
    """A LightGBM classifier on the transformed training split, scored on the eval split."""
    from lightgbm import LGBMClassifier

    X, y = fn_args.train_data()
    model = LGBMClassifier(n_estimators=fn_args.train_args.get("num_trees", 100), random_state=fn_args.seed, verbose=-1)
    model.fit(X, y)
    X_eval, y_eval = fn_args.eval_data()
    accuracy = float((model.predict(X_eval) == y_eval).mean())
    fn_args.log_metric("eval_accuracy", accuracy, step=model.n_estimators)
    print(f"eval accuracy {accuracy:.3f} on {len(y_eval)} penguins")
    conveyor.model.save(model, fn_args)
