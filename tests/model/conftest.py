"""Fitted transform graphs and training matrices, made once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.model import label_vector, to_matrix
from conveyor.transform.fitted import load
from tests.model import graphs

Training = tuple[Path, Any, np.ndarray]


@pytest.fixture(scope="session")
def training(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, bool], Training]:
    """``training(task, sparse)``: the graph's folder, and X, y as the Trainer would hand them over."""
    made: dict[tuple[str, bool], Training] = {}

    def make(task: str, sparse: bool) -> Training:
        if (task, sparse) not in made:
            folder = graphs.saved(task, tmp_path_factory.mktemp(f"graph-{task}"), sparse=sparse)
            graph = load(folder)
            columns = graph.apply(graphs.table())
            label = graphs.TARGETS[task]
            matrix, _ = to_matrix(columns, graph.describe(), label)
            y = label_vector(columns, label)
            made[task, sparse] = (folder, matrix, y.astype(np.int64) if task == "binary" else y)
        return made[task, sparse]

    return make
