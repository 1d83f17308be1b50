"""The complaints' preprocessing and training: ``preprocessing_fn`` for Transform, ``run_fn`` for each Trainer.

Every Trainer runs the same ``run_fn``; its ``custom_config={"model": ...}`` picks the model:
"logistic" (scikit-learn), "lightgbm", "mlp" (torch) or "keras" (Keras 3 on torch). All of them
learn from the same transformed features and save a bundle that takes raw rows.
"""

from __future__ import annotations

import os

import conveyor.model
import conveyor.transform as ct

CATEGORIES = ["product", "sub_product", "company_response_to_consumer", "state", "issue"]
MIN_ZIP_AREA_ROWS = 3  # rarer ZIP areas share the one out-of-vocabulary column
LABEL = "consumer_disputed"
POSITIVE = "Yes"
C = 0.1  # chosen by 5-fold cross-validation on span 1's training rows (baselines.py shows the eval figures)


def preprocessing_fn(inputs):
    """Categories one-hot, the ZIP code's area (its first three digits) one-hot, the label as is (Yes/No).

    No text features: tf-idf of issue and sub_issue mostly repeats the issue's one-hot (it moved
    the AUC by under 0.003 in cross-validation), and narratives are too rare here (12 rows).
    """
    out = {}
    for name in CATEGORIES:
        # A missing value is its own category; a value unseen in training goes to the one OOV bucket.
        filled = ct.fill_missing(inputs[name], "missing")
        out[name] = ct.one_hot(ct.compute_and_apply_vocabulary(filled, num_oov_buckets=1))
    # The area is a category, not a number: 100 and 101 are no closer than 100 and 900. Masked codes such as 088XX keep it.
    zip_area = ct.substr(ct.fill_missing(inputs["zip_code"], "missing"), 0, 3)
    out["zip_area"] = ct.one_hot(
        ct.compute_and_apply_vocabulary(zip_area, frequency_threshold=MIN_ZIP_AREA_ROWS, num_oov_buckets=1)
    )
    out[LABEL] = inputs[LABEL]
    return out


def run_fn(fn_args):
    """Train the model ``custom_config["model"]`` names, log its eval accuracy and save it."""
    trainers = {"logistic": train_logistic, "lightgbm": train_lightgbm, "mlp": train_mlp, "keras": train_keras}
    name = fn_args.custom_config.get("model", "logistic")
    if name not in trainers:
        msg = f"custom_config['model'] must be one of {sorted(trainers)}, got {name!r}."
        raise ValueError(msg)
    if fn_args.base_model is not None and name != "logistic":
        print(f"{name}: trained cold; only the logistic model continues from a base model ({fn_args.base_model})")
    model = trainers[name](fn_args)
    conveyor.model.save(model, fn_args)


def train_logistic(fn_args):
    """Logistic regression on the sparse matrix as it comes (SciPy CSR); warm from the base model when there is one."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    X, y = fn_args.train_data()
    # A Tuner's C wins over train_args', which wins over the default.
    model = LogisticRegression(C=fn_args.hyperparameters.get("C", fn_args.train_args.get("C", C)), max_iter=1000)
    if fn_args.base_model is not None:
        start = warm_start_weights(fn_args.base_model, fn_args.transform_graph, fn_args.label_key, np.unique(y))
        if start is not None:
            model.set_params(warm_start=True)
            model.coef_, model.intercept_ = start
    model.fit(X, y)
    X_eval, y_eval = fn_args.eval_data()
    log_accuracy(fn_args, model.predict(X_eval) == y_eval, step=int(model.n_iter_[0]))
    return model


def warm_start_weights(base_model, transform_graph, label, classes):
    """The base bundle's ``coef_`` and ``intercept_`` laid out on the columns of ``transform_graph``,
    each weight moved by what its column means (see ``column_names``).

    Vocabularies are refit on every span, so "product=Mortgage" may be column 3 in the base
    model and column 5 now; a category new in this run starts at 0, one gone from it is
    dropped. None, with the reason printed, when the base is no binary logistic regression of
    the same ``classes``: the model is then fitted cold.
    """
    import numpy as np

    base = conveyor.model.load_model(base_model)
    native = base.native  # scikit-learn's estimator, or the bundle's NumPy scorer of its saved weights
    kind = type(native).__name__
    linear = all(hasattr(native, a) for a in ("coef_", "intercept_", "classes_")) and len(native.coef_) == 1
    if not linear or list(native.classes_) != list(classes):
        print(
            f"warm start: model {base_model} is a {kind} of classes {list(getattr(native, 'classes_', []))}, not a binary linear classifier of {list(classes)}; training cold"
        )
        return None
    base_names = column_names(ct.load(base.path / base.manifest["transform_graph"]), base.label)
    base_column = {name: i for i, name in enumerate(base_names) if name is not None}
    names = column_names(ct.load(transform_graph), label)
    coef = np.zeros((1, len(names)))
    carried = [i for i, name in enumerate(names) if name in base_column]
    coef[0, carried] = native.coef_[0, [base_column[names[i]] for i in carried]]
    print(
        f"warm start from model {base_model}: {len(carried)} of {len(names)} weights carried over by feature name, and the intercept"
    )
    return coef, np.array(native.intercept_, dtype=float)


def column_names(graph, label):
    """What each column of the model's matrix means, in ``conveyor.model.feature_names`` order.

    A vocabulary's one-hot column is named by its value ("product=Mortgage"); a number or bool
    output by itself. Other columns (out-of-vocabulary buckets, quantile buckets, vector
    outputs) get None: their meaning changes when the graph is refit, so no weight follows them.
    """
    names = []
    for output, spec in graph.describe().items():
        if output == label:
            continue
        node = graph.outputs[output]
        if spec["kind"] in ("number", "bool"):
            names.append(output)
        elif node.op == "one_hot" and node.inputs[0].op == "apply_vocabulary":
            terms = [f"{output}={term}" for term in node.inputs[1].params["value"]]
            names += terms + [None] * (spec["width"] - len(terms))
        else:
            names += [None] * spec["width"]
    return names


def tuner_fn(fn_args):
    """For a Tuner (``TUNE = True`` in pipeline.py): the logistic regression's C that scores the best eval AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    import conveyor.training

    def objective(trial, fn_args):
        X, y = fn_args.train_data()
        model = LogisticRegression(C=trial.suggest_float("C", 1e-2, 10, log=True), max_iter=1000).fit(X, y)
        X_eval, y_eval = fn_args.eval_data()
        return roc_auc_score(y_eval == POSITIVE, model.predict_proba(X_eval)[:, list(model.classes_).index(POSITIVE)])

    return conveyor.training.Search(objective)


def train_lightgbm(fn_args):
    """Gradient-boosted trees; LightGBM reads the CSR matrix and the Yes/No labels directly."""
    from lightgbm import LGBMClassifier

    X, y = fn_args.train_data()
    trees = fn_args.train_args.get("num_trees", 200)
    model = LGBMClassifier(n_estimators=trees, random_state=fn_args.seed, verbose=-1).fit(X, y)
    X_eval, y_eval = fn_args.eval_data()
    log_accuracy(fn_args, model.predict(X_eval) == y_eval, step=trees)
    return model


def train_mlp(fn_args):
    """A small torch MLP on shuffled mini-batches of the sparse matrix, each densified as it is used.

    The rows come in file order, here by date: streamed as they are (``fn_args.train_batches()``),
    every epoch would end on 2015's complaints. The CSR matrix is small even where its dense form
    would not be, so a DataLoader over its row numbers shuffles it every epoch. The network
    outputs one logit, for "Yes"; ``classes_`` tells the bundle what 0 and 1 mean.
    """
    import torch

    torch.manual_seed(fn_args.seed)
    X, y = fn_args.train_data()
    X_eval, y_eval = fn_args.eval_data()
    labels = torch.as_tensor(y == POSITIVE, dtype=torch.float32)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    shuffled = torch.utils.data.DataLoader(range(X.shape[0]), batch_size=128, shuffle=True)
    for epoch in range(fn_args.train_args.get("epochs", 5)):
        model.train()
        for rows in shuffled:
            optimizer.zero_grad()
            loss_fn(model(dense(X[rows.numpy()])).squeeze(1), labels[rows]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            says_yes = (model(dense(X_eval)).squeeze(1) > 0).numpy()
        log_accuracy(fn_args, says_yes == (y_eval == POSITIVE), step=epoch + 1)
    model.classes_ = ["No", "Yes"]
    return model


def train_keras(fn_args):
    """The same network in Keras 3, on the torch backend (chosen before Keras is first imported).

    The matrix is small enough to densify whole; Keras shuffles it every epoch.
    """
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    keras.utils.set_random_seed(fn_args.seed)
    X, y = fn_args.train_data()
    X_eval, y_eval = fn_args.eval_data()
    model = keras.Sequential(
        [
            keras.Input(shape=(X.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(
        dense(X).numpy(), (y == POSITIVE).astype("float32"), batch_size=128, epochs=fn_args.train_args.get("epochs", 5),
        validation_data=(dense(X_eval).numpy(), (y_eval == POSITIVE).astype("float32")), verbose=0,
    )  # fmt: skip
    for epoch, accuracy in enumerate(history.history["val_accuracy"], start=1):
        fn_args.log_metric("eval_accuracy", accuracy, step=epoch)
    print(f"keras: eval accuracy {history.history['val_accuracy'][-1]:.3f} on {len(y_eval)} complaints")
    model.classes_ = ["No", "Yes"]
    return model


def dense(matrix):
    """A SciPy sparse matrix as the dense float32 tensor a network takes."""
    import torch

    return torch.from_numpy(matrix.toarray().astype("float32"))


def log_accuracy(fn_args, correct, step):
    """Log the share of eval rows predicted right, and print it."""
    accuracy = float(correct.mean())
    fn_args.log_metric("eval_accuracy", accuracy, step=step)
    print(
        f"{fn_args.custom_config.get('model', 'logistic')}: eval accuracy {accuracy:.3f} on {len(correct)} complaints"
    )
