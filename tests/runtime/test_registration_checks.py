"""Registration refuses what cannot run: a working_directory missing on the runtime's machine is
refused by the runtime itself (flamepy clients register directly), and one removed after
registration fails the start instead of being created."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from runtime_support import Frontend, iter_codes, wait_until

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import types_pb2
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fe(runtime: LocalRuntime) -> Iterator[Frontend]:
    with Frontend(runtime.endpoint) as frontend:
        yield frontend


def _refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def _names(fe: Frontend) -> set[str]:
    reply = fe.stub.ListApplication(fpb.ListApplicationRequest())
    return {a.metadata.name for a in reply.applications}


def test_register_refuses_a_missing_working_directory(fe: Frontend, tmp_path: Path) -> None:
    """RegisterApplication with a working_directory that does not exist is INVALID_ARGUMENT
    naming the field and the path, registers nothing and creates no folder."""
    missing = tmp_path / "opt" / "examples" / "echo"
    err = _refusal(lambda: fe.register("reg-missing-wd", working_directory=str(missing)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        f"spec.working_directory '{missing}' does not exist on this machine; "
        "create it or fix the path"
    )
    assert "reg-missing-wd" not in _names(fe)
    assert not (tmp_path / "opt").exists()


def test_update_refuses_a_missing_working_directory(fe: Frontend, tmp_path: Path) -> None:
    """UpdateApplication checks the working_directory the same way and keeps the old spec."""
    assert fe.register("reg-upd-wd", working_directory=str(tmp_path)).return_code == 0
    spec = types_pb2.ApplicationSpec(command="python", working_directory=str(tmp_path / "gone"))
    err = _refusal(
        lambda: fe.stub.UpdateApplication(
            fpb.UpdateApplicationRequest(name="reg-upd-wd", application=spec)
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.working_directory" in err.details() and "does not exist" in err.details()
    app = fe.stub.GetApplication(fpb.GetApplicationRequest(name="reg-upd-wd"))
    assert app.spec.working_directory == str(tmp_path)


def test_register_refuses_a_working_directory_that_is_a_file(fe: Frontend, tmp_path: Path) -> None:
    """A working_directory naming a regular file is refused as not a directory."""
    file = tmp_path / "service.py"
    file.write_text("")
    err = _refusal(lambda: fe.register("reg-file-wd", working_directory=str(file)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == f"spec.working_directory '{file}' is not a directory; fix the path"


def test_working_directory_removed_after_registration_fails_the_start(
    fe: Frontend, tmp_path: Path
) -> None:
    """A working_directory deleted after registration is a bind failure with the registration
    message, and the runtime does not create the folder again."""
    folder = tmp_path / "app"
    folder.mkdir()
    assert fe.register("reg-vanished", working_directory=str(folder)).return_code == 0
    shutil.rmtree(folder)
    fe.create_session("reg-vanished-1", "reg-vanished")
    fe.create_task("reg-vanished-1", b"cwd")

    def failure() -> str | None:
        session = fe.get_session("reg-vanished-1")
        if 1001 not in set(iter_codes(session)):
            return None
        return str(session.status.events[0].message)

    message = wait_until(failure, what="bind failure of reg-vanished-1")
    assert "return_code 11" in message
    assert f"spec.working_directory '{folder}' does not exist on this machine" in message
    assert not folder.exists()
    fe.close_session("reg-vanished-1")
