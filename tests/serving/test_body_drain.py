"""A body over the limit is answered 413 to a client that sends all of it before it reads:
http.client, requests and urllib do. Answering at once and closing with the rest unread made the
kernel reset the connection, so such a client saw ConnectionResetError, not the 413's reason.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from tests.serving.test_rest import NAME, base_path, start  # noqa: F401 (base_path: the module's bundle)


def test_a_body_far_over_the_limit_gets_its_413_not_a_reset(base_path: Path) -> None:  # noqa: F811
    server, address = start("--model-dir", str(base_path), "--model-name", NAME, "--max-request-bytes", "2048")
    try:
        host, port = address.removeprefix("http://").split(":")
        body = json.dumps({"instances": [{"narrative": "x" * (8 << 20)}]}).encode()  # 8 MiB against 2 KiB
        for declared in (True, False):  # with its Content-Length, and chunked
            for _ in range(3):
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
                if declared:
                    connection.request("POST", f"/v1/models/{NAME}:predict", body=body)
                else:
                    connection.request(
                        "POST", f"/v1/models/{NAME}:predict", body=iter([body[:4096], body[4096:]]), encode_chunked=True
                    )
                response = connection.getresponse()
                assert response.status == 413
                assert "larger than the 2048 bytes this server reads" in json.loads(response.read())["error"]
                connection.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
