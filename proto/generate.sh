#!/bin/sh
# Regenerate the Python gRPC stubs in frontend/hutch/{helper,remote}/v1/ from proto/.
# The stubs are committed; tests/test_proto.py fails when they are stale.
set -eu
cd "$(dirname "$0")/.."
python3 -m grpc_tools.protoc -I proto \
    --python_out=frontend --pyi_out=frontend --grpc_python_out=frontend \
    proto/hutch/helper/v1/helper.proto proto/hutch/remote/v1/remote.proto
