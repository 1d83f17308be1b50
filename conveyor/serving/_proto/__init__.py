"""The Open Inference Protocol's gRPC messages and service, generated from ``grpc_predict_v2.proto``
by ``scripts/generate_grpc.py``: edit the .proto and run the script, never the generated files.
"""
