"""The committed generated wire code matches the protos, and speaks Flame's field numbers."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    """Regenerating from schemas/ gives byte-identical files to the committed _wire code."""
    out = tmp_path / "flame_v1"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_wire.py"), "--out", str(out)], check=True
    )
    committed = ROOT / "flame_agents" / "_wire" / "flame_v1"
    fresh = sorted(p.name for p in out.iterdir() if p.is_file())
    existing = sorted(p.name for p in committed.iterdir() if p.is_file())
    assert fresh == existing, "file set differs: run `make wire` and commit"
    _, mismatch, errors = filecmp.cmpfiles(out, committed, fresh, shallow=False)
    assert not mismatch and not errors, f"stale generated code {mismatch}: run `make wire`"


def test_field_numbers_match_flame() -> None:
    """A few load-bearing field numbers are Flame 0.6's (numbering starts at 2 on purpose)."""
    from flame_agents._wire import frontend_pb2, shim_pb2, types_pb2

    def num(msg: type, field: str) -> int:
        return int(msg.DESCRIPTOR.fields_by_name[field].number)  # type: ignore[attr-defined]

    assert num(types_pb2.SessionSpec, "application") == 2
    assert num(types_pb2.SessionSpec, "common_data") == 4
    assert num(types_pb2.SessionSpec, "resreq") == 9
    assert num(types_pb2.TaskSpec, "session_id") == 2
    assert num(types_pb2.ApplicationSpec, "delay_release") == 10
    assert num(shim_pb2.TaskContext, "input") == 4
    assert num(frontend_pb2.OpenSessionRequest, "session") == 2
    assert types_pb2.TaskState.Value("Cancelled") == 4
    methods = [m.name for m in frontend_pb2.DESCRIPTOR.services_by_name["Frontend"].methods]
    assert len(methods) == 18


def test_coexists_with_published_flamepy() -> None:
    """Our private descriptor pool lets flamepy's generated flame.v1 code load in one process."""
    import flamepy.proto.types_pb2 as theirs

    from flame_agents._wire import types_pb2 as ours

    msg = ours.Task()
    msg.metadata.id = "7"
    msg.spec.session_id = "s-1"
    msg.status.state = ours.Failed
    parsed = theirs.Task.FromString(msg.SerializeToString())
    assert (parsed.metadata.id, parsed.spec.session_id, parsed.status.state) == ("7", "s-1", 3)
