"""The model bundle: a trained model with its transform graph, raw-input signature and file hashes.

    import conveyor.model

    def run_fn(fn_args):
        model = LogisticRegression().fit(*fn_args.train_data())
        conveyor.model.save(model, fn_args)          # flavor and task found from the model

    model = conveyor.model.load_model(bundle_dir)     # every file's sha256 checked first
    model.predict([{"product": "Mortgage", "amount": 120.0}])   # {"probability": ..., "class": ...}

Models are saved in their library's own safe format (skops, LightGBM text, XGBoost UBJSON,
ONNX, TorchScript or safetensors weights, Keras's ``.keras``); pickle only when the caller asks
for it by name, when saving and when loading.
"""

from conveyor.model.features import feature_names, label_vector, to_matrix
from conveyor.model.flavors import ModelFlavor, flavor_of
from conveyor.model.loading import LoadedModel, load_model, load_native
from conveyor.model.saving import save

__all__ = [
    "LoadedModel",
    "ModelFlavor",
    "feature_names",
    "flavor_of",
    "label_vector",
    "load_model",
    "load_native",
    "save",
    "to_matrix",
]
