"""Regenerate flame_agents/_wire/flame_v1 from schemas/flame/v1/*.proto.

Usage: python scripts/gen_wire.py [--out DIR]

Two rewrites follow protoc, both needed for the generated code to live inside our package:
- protoc emits absolute imports (``import types_pb2``); they become package-relative.
- messages are registered in a private descriptor pool (``flame_agents._wire.flame_v1._pool``)
  rather than protobuf's default one, so the published flamepy (which registers the same
  ``flame.v1`` names) can be imported in the same process without a symbol clash.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "schemas" / "flame" / "v1"
DEFAULT_OUT = ROOT / "flame_agents" / "_wire" / "flame_v1"
PROTOS = ("types.proto", "frontend.proto", "shim.proto")

POOL_MODULE = '''"""The private descriptor pool that holds the generated flame.v1 messages."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
'''

INIT_MODULE = '''"""Generated flame.v1 protobuf and gRPC code.

Do not edit: run scripts/gen_wire.py.
"""
'''


def _rewrite(text: str) -> str:
    text = re.sub(r"^import (\w+_pb2) as (\w+)$", r"from . import \1 as \2", text, flags=re.M)
    text = text.replace(
        "from google.protobuf import descriptor_pool as _descriptor_pool",
        "from ._pool import POOL as _POOL",
    )
    return text.replace("_descriptor_pool.Default()", "_POOL")


def generate(out: Path) -> None:
    """Run protoc for every proto and write the rewritten modules into ``out``."""
    from grpc_tools import protoc  # dev dependency, imported only when regenerating

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *[str(PROTO_DIR / p) for p in PROTOS],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for path in sorted(Path(tmp).iterdir()):
            (out / path.name).write_text(_rewrite(path.read_text()))
    (out / "_pool.py").write_text(POOL_MODULE)
    (out / "__init__.py").write_text(INIT_MODULE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args(argv)
    generate(ns.out)
    print(f"generated {len(PROTOS)} protos into {ns.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
