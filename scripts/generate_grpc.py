"""Generate the Python code of the Open Inference Protocol's gRPC service from its .proto.

    pip install -e '.[dev]'          # brings the pinned grpcio-tools
    python scripts/generate_grpc.py

writes ``grpc_predict_v2_pb2.py``, ``.pyi`` and ``_pb2_grpc.py`` beside
``conveyor/serving/_proto/grpc_predict_v2.proto``. The grpcio-tools pinned in the ``dev`` extra
is old enough that the code imports under protobuf 6 and 7 alike (the Beam and Kubeflow extras
hold protobuf below 7). The messages are built in a descriptor pool of their own, not the
process-wide one: tritonclient, KServe and MLServer define the same ``inference.*`` messages
there, and a second definition of a name fails the import of whichever comes second.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = Path("conveyor/serving/_proto/grpc_predict_v2.proto")
SHARED_POOL = "_descriptor_pool.Default().AddSerializedFile("
OWN_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def main() -> None:
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--python_out=.", "--pyi_out=.", "--grpc_python_out=.", str(PROTO)]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True)
    messages = ROOT / PROTO.with_name("grpc_predict_v2_pb2.py")
    code = messages.read_text(encoding="utf-8")
    if SHARED_POOL not in code:
        msg = f"{messages} does not add its file to the default pool as expected; check the grpcio-tools version."
        raise SystemExit(msg)
    messages.write_text(code.replace(SHARED_POOL, OWN_POOL), encoding="utf-8")
    print(f"generated from {PROTO} with grpcio-tools {version('grpcio-tools')}")


if __name__ == "__main__":
    main()
