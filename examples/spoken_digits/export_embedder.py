"""Train the spoken digits' embedding net on the training voices and export it as ``embedder.onnx``.

    python examples/spoken_digits/export_embedder.py [--root DIR]

Runs the pipeline's steps up to Transform (``pipeline.feature_steps``; from cache when
``conveyor run`` ran them on the same root), reads the log-mel features of the train split,
and trains a small 1-D convolutional net on them with torch: two convolutions over time with
the 40 mel bands as channels, then the mean and the maximum of each of 32 channels over time,
a 64-value embedding, which a linear layer maps to the ten digits while training. The net
without that layer goes to ONNX: input ``mel`` (rows, 40 x 101, as Transform writes it), output
``embedding`` (rows, 64). Seeded, on one thread, a fixed number of epochs: the eval voices
are never looked at. Needs torch (CPU is enough) and onnxruntime, which checks the export.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
BANDS, FRAMES, WIDTH = 40, 101, 32
EPOCHS, BATCH, SEED = 60, 32, 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("CONVEYOR_ROOT", "conveyor_root"), help="as conveyor run's")
    parser.add_argument("--out", default=str(HERE / "embedder.onnx"))
    args = parser.parse_args()
    mel, label = training_features(Path(args.root).resolve())  # relative to here, as on the command line
    net = train(mel, label)
    export(net, Path(args.out), mel[:4])
    print(f"trained on {len(label)} clips, exported to {args.out}")


def training_features(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The train split's z-scored log-mel features and labels, from the pipeline's own Transform."""
    import pyarrow.parquet as pq

    sys.path.insert(0, str(HERE))
    from pipeline import LABEL, feature_steps

    from conveyor import Pipeline

    run = Pipeline("spoken_digits", feature_steps(), root=root).run()
    transform = run.executions["Transform"]
    if transform.status not in ("succeeded", "cached"):
        sys.exit(f"the pipeline's Transform did not run ({transform.status}): {transform.error}")
    uri = Path(transform.outputs["transformed_examples"][0].uri)
    table = pq.read_table(uri / "Split-train")
    mel = np.asarray(table.column("mel").combine_chunks().flatten(), dtype=np.float32).reshape(table.num_rows, -1)
    return mel, table.column(LABEL).to_numpy().astype(np.int64)


def network() -> Any:
    import torch
    from torch import nn

    class Embedding(nn.Module):
        """Log-mel rows (bands x frames, flattened) to the mean and maximum over time of conv channels."""

        def __init__(self) -> None:
            super().__init__()
            self.convolutions = nn.Sequential(
                nn.Conv1d(BANDS, 48, 5, padding=2), nn.BatchNorm1d(48), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(48, WIDTH, 5, padding=2), nn.BatchNorm1d(WIDTH), nn.ReLU(),
            )  # fmt: skip

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            h = self.convolutions(mel.reshape(-1, BANDS, FRAMES))
            return torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)

    return Embedding()


def train(mel: np.ndarray, label: np.ndarray) -> Any:
    """The embedding net, trained with a linear head on the digits; each batch shifted in time a little."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # the same floats on every run
    embedding = network()
    model = nn.Sequential(embedding, nn.Linear(2 * WIDTH, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    x, y = torch.from_numpy(mel).reshape(-1, BANDS, FRAMES), torch.from_numpy(label)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x))
        for start in range(0, len(x), BATCH):
            batch = order[start : start + BATCH]
            shift = int(torch.randint(-20, 21, ()).item())  # up to 0.2 s: a digit said a little earlier or later
            loss = nn.functional.cross_entropy(model(torch.roll(x[batch], shift, dims=2)), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return embedding.eval()


def export(net: Any, path: Path, sample: np.ndarray) -> None:
    """The net as ONNX, checked against torch on ``sample`` with onnxruntime."""
    import onnxruntime
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: it needs no onnxscript
        torch.onnx.export(
            net, (torch.from_numpy(sample),), str(path), dynamo=False, input_names=["mel"], output_names=["embedding"],
            dynamic_axes={"mel": {0: "rows"}, "embedding": {0: "rows"}}, opset_version=17,
        )  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = net(torch.from_numpy(sample)).numpy()
    np.testing.assert_allclose(session.run(None, {"mel": sample})[0], expected, rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
    main()
