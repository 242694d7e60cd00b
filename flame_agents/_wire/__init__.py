"""The Flame 0.6 wire: generated protobuf/gRPC modules, proto<->type conversion, error mapping.

This package is the only place that imports the generated ``*_pb2`` modules; everything else
goes through the names re-exported here.
"""

from flame_agents._wire.flame_v1 import (
    frontend_pb2,
    frontend_pb2_grpc,
    shim_pb2,
    shim_pb2_grpc,
    types_pb2,
)

__all__ = ["frontend_pb2", "frontend_pb2_grpc", "shim_pb2", "shim_pb2_grpc", "types_pb2"]
