"""The Flame 0.6 wire: generated protobuf/gRPC modules, proto<->type conversion, error mapping.

This package is the only place that imports the generated ``*_pb2`` modules; everything else
goes through the names re-exported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flame_agents._wire.flame_v1 import (
        frontend_pb2,
        frontend_pb2_grpc,
        shim_pb2,
        shim_pb2_grpc,
        types_pb2,
    )

__all__ = ["frontend_pb2", "frontend_pb2_grpc", "shim_pb2", "shim_pb2_grpc", "types_pb2"]


def __getattr__(name: str) -> Any:
    # Each generated module is imported on first use: a service process needs only the shim
    # and types modules, and building the Frontend descriptors costs it start-up time.
    if name in __all__:
        module = importlib.import_module(f"flame_agents._wire.flame_v1.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
