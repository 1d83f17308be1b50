"""A run recorded as if by another machine: ``python -m tests.metadata.remote_host URL MARKER [STEP HOST]``.

It records a run with one step running (its output PENDING) under a host name that is not
this one, beats every 0.1 s, writes MARKER, and waits. Given STEP, it joins the shared run
instead (``join_run``, as an orchestrator's task does) and runs that step, on HOST (empty:
this host's name). Killed, it stands for a machine that
died; sent SIGUSR1, it stops its heartbeat and lives on, as a process whose machine lost the
network or froze. Either way its pid, alive or not, means nothing to a reader on this host.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

from conveyor.artifacts import Model
from conveyor.metadata import MetadataStore

HOST = "elsewhere.example"
RUN = "run-remote"


def main(url: str, marker: str, step: str = "", host: str = HOST) -> None:
    if host:
        socket.gethostname = lambda: host  # the store reads the host name when it records a run
    MetadataStore.heartbeat_every = 0.1
    store = MetadataStore(url)
    if step:
        store.join_run("remote", RUN)
    else:
        store.begin_run("remote", RUN)
    store.record_start(
        RUN, component_id=step or "train", component_type="tests.train", parameters={}, code_fingerprint="code",
        cache_key=None, inputs={}, outputs={"model": Model},
        uri_for=lambda eid, key: f"/{HOST}/pipelines/{key}/{eid}", log_for=lambda eid: f"/{HOST}/pipelines/.logs/{eid}.log",
    )
    signal.signal(signal.SIGUSR1, lambda *_: store._stop_heartbeat(RUN))
    Path(marker).write_text("beating")
    time.sleep(600)


if __name__ == "__main__":
    main(*sys.argv[1:])
