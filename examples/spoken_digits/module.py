"""The spoken digits' features and classifier: ``preprocessing_fn`` for Transform, ``run_fn`` for the Trainer.

The transform graph starts from the file's bytes, so the pushed model takes a FLAC or WAV file
as it is: ``{"instances": [{"content": {"b64": "<the file, base64>"}}]}``.
"""

from __future__ import annotations

import conveyor.model
import conveyor.transform as ct

RATE = 16000
MEL = {"n_fft": 512, "hop_length": 160, "n_mels": 40}  # 32 ms windows every 10 ms: 40 bands x 101 frames a second
LABEL = "label"


def preprocessing_fn(inputs):
    """One second of each clip (cut, or padded with silence), its log-mel spectrogram, each band z-scored."""
    clip = ct.pad_or_trim(ct.decode_audio(inputs["content"], sample_rate=RATE), RATE)
    mel = ct.log_mel_spectrogram(clip, **MEL)
    return {"mel": ct.scale_to_z_score(mel, per_axis=0), LABEL: inputs[LABEL]}


def run_fn(fn_args):
    """A logistic regression on the log-mel cells, scored on the eval split (voices it never heard)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    X, y = fn_args.train_data()
    y = y.astype(int)  # digits, so the server answers "class": 7, not 7.0
    model = LogisticRegression(C=fn_args.train_args.get("C", 0.01), max_iter=2000)
    with threadpool_limits(1):  # 270 rows: BLAS threads wait on each other longer than they work (10x slower on 2 busy cores)
        model.fit(X, y)
    X_eval, y_eval = fn_args.eval_data()
    accuracy = float((model.predict(X_eval) == y_eval).mean())
    fn_args.log_metric("eval_accuracy", accuracy, step=int(model.n_iter_.max()))
    print(f"eval accuracy {accuracy:.3f} on {len(y_eval)} clips of held-out voices")
    conveyor.model.save(model, fn_args)
