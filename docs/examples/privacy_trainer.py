"""A Trainer module file whose run_fn trains a torch network with differential privacy (docs/privacy.md)."""

import numpy as np
import torch

import conveyor.model
from conveyor.privacy import make_private


def run_fn(fn_args):
    X, y = fn_args.train_data()
    features = torch.from_numpy(np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32))
    labels, codes = np.unique(y, return_inverse=True)
    rows = torch.utils.data.TensorDataset(features, torch.from_numpy(codes))
    model = torch.nn.Sequential(
        torch.nn.Linear(features.shape[1], 16), torch.nn.ReLU(), torch.nn.Linear(16, len(labels))
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = torch.utils.data.DataLoader(rows, batch_size=32)
    epochs = fn_args.train_args.get("epochs", 5)

    model, optimizer, loader = make_private(model, optimizer, loader, epsilon=4.0, epochs=epochs)
    for _ in range(epochs):
        for x, target in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), target).backward()
            optimizer.step()

    model.classes_ = labels.tolist()  # the class of each output, for predictions by name
    conveyor.model.save(model, fn_args)  # the bundle records ε spent, δ and the noise
