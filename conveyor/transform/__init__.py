"""``preprocessing_fn`` vocabulary, fitted once on training data and applied the same everywhere.

    import conveyor.transform as ct

    def preprocessing_fn(inputs):
        return {
            "amount": ct.scale_to_z_score(inputs["amount"]),
            "product": ct.compute_and_apply_vocabulary(inputs["product"], num_oov_buckets=1),
            "label": inputs["consumer_disputed"],
        }
"""

from conveyor.transform.audio import decode_audio, log_mel_spectrogram, mfcc, pad_or_trim, resample
from conveyor.transform.fitted import FittedGraph, load
from conveyor.transform.graph import Column
from conveyor.transform.image import decode_image, normalize, resize
from conveyor.transform.onnx_model import apply_model
from conveyor.transform.ops import (
    apply_buckets,
    apply_vocabulary,
    bucketize,
    cast,
    clip,
    compute_and_apply_vocabulary,
    fill_missing,
    log1p,
    lower,
    max,
    mean,
    min,
    one_hot,
    quantiles,
    regex_replace,
    scale_to_0_1,
    scale_to_z_score,
    split,
    std,
    strip,
    substr,
    to_number,
    tokenize,
    upper,
    var,
    vocabulary,
    where,
)
from conveyor.transform.pca import pca, stack
from conveyor.transform.text import bag_of_words, document_frequency, hash_strings, ngrams, tfidf, word_count

__all__ = [
    "Column",
    "FittedGraph",
    "apply_buckets",
    "apply_model",
    "apply_vocabulary",
    "bag_of_words",
    "bucketize",
    "cast",
    "clip",
    "compute_and_apply_vocabulary",
    "decode_audio",
    "decode_image",
    "document_frequency",
    "fill_missing",
    "hash_strings",
    "load",
    "log1p",
    "log_mel_spectrogram",
    "lower",
    "max",
    "mean",
    "mfcc",
    "min",
    "ngrams",
    "normalize",
    "one_hot",
    "pad_or_trim",
    "pca",
    "quantiles",
    "regex_replace",
    "resample",
    "resize",
    "scale_to_0_1",
    "scale_to_z_score",
    "split",
    "stack",
    "std",
    "strip",
    "substr",
    "tfidf",
    "to_number",
    "tokenize",
    "upper",
    "var",
    "vocabulary",
    "where",
    "word_count",
]
