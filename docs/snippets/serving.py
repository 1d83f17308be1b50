"""The serving guide (docs/serving.md): a model server started from Python, asked over HTTP."""

from __future__ import annotations

import json
import urllib.request


# --8<-- [start:server]
def ask_server(base_path: str, rows: list[dict]) -> dict:
    """Serve the newest version under ``base_path`` on a free loopback port, and predict ``rows`` over REST."""
    from conveyor.serving import ModelServer

    with ModelServer({"churn": base_path}, rest_port=0) as server:
        request = urllib.request.Request(
            f"{server.url}/v1/models/churn:predict",
            data=json.dumps({"instances": rows}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            return json.load(response)  # {"predictions": [{"probability": ..., "class": ...}, ...], "request_id": ...}


# --8<-- [end:server]
