"""The runners the Beam tests run on: DirectRunner in processes, and the DaskRunner on a local cluster.

The cluster takes seconds to start, so every test of the session shares it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

DIRECT = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """Two worker processes of one thread each, as a small cluster of two machines would be."""
    pytest.importorskip("apache_beam", reason="the Beam engine needs apache_beam: pip install 'conveyor[beam]'")
    distributed = pytest.importorskip(
        "distributed", reason="the DaskRunner needs dask.distributed: pip install 'apache-beam[dask]'"
    )
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def dask_beam_args(dask_cluster: Any) -> list[str]:
    return ["--runner=DaskRunner", f"--dask_client_address={dask_cluster.scheduler_address}"]


@pytest.fixture(params=["direct", "dask"])
def beam_args(request: pytest.FixtureRequest) -> list[str]:
    """Each runner in turn: DirectRunner with two worker processes, then the DaskRunner."""
    if request.param == "direct":
        return DIRECT
    args: list[str] = request.getfixturevalue("dask_beam_args")
    return args
