"""Prestarted interpreters: a launch served by a spare looks exactly like a fresh launch.

Two runtimes run side by side: one keeps a spare (``--prestart 1``), one launches every instance
fresh (``--prestart 0``). The same probe service answers, on each, with everything a launch
decides about its process (argv, sys.path, environment, cwd, log files, process group, ...);
the answers must be equal but for per-launch names (home folder, executor id) and the preload.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from runtime_support import SERVICES, Frontend, iter_codes, wait_until

from flame_agents._wire import frontend_pb2 as fpb
from flame_agents._wire import types_pb2
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PER_LAUNCH_ENV = {
    "FLAME_INSTANCE_ENDPOINT",  # a socket named after the executor
    "FLAME_AGENTS_SESSION",  # each probe opens its own session
    "FLAME_ENDPOINT",  # each runtime's own ports
    "FLAME_CACHE_ENDPOINT",
}


def spare_pids(rt: LocalRuntime, name: str = "flame-spare") -> list[int]:
    """Pids of the runtime's spares named ``name`` (warm ones by default)."""
    try:
        children = psutil.Process(rt.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if child.name() == name:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="module")
def spared() -> Iterator[tuple[LocalRuntime, Frontend]]:
    """A runtime with one prestarted interpreter."""
    with (
        LocalRuntime(set_env=False, extra_args=["--prestart", "1"]) as rt,
        Frontend(rt.endpoint) as fe,
    ):
        yield rt, fe


@pytest.fixture(scope="module")
def fresh() -> Iterator[tuple[LocalRuntime, Frontend]]:
    """A runtime without prestarted interpreters."""
    with (
        LocalRuntime(set_env=False, extra_args=["--prestart", "0"]) as rt,
        Frontend(rt.endpoint) as fe,
    ):
        yield rt, fe


def register(fe: Frontend, name: str, command: str, args: list[str], **fields: Any) -> None:
    env = fields.pop("env", {})
    spec = types_pb2.ApplicationSpec(
        command=command,
        arguments=args,
        environments=[types_pb2.Environment(name=k, value=v) for k, v in env.items()],
        **fields,
    )
    result = fe.stub.RegisterApplication(
        fpb.RegisterApplicationRequest(name=name, application=spec)
    )
    assert result.return_code == 0, result.message


def probe(rt: LocalRuntime, fe: Frontend, app: str, sid: str, *, spare: bool) -> dict[str, Any]:
    """The probe's view of its process from a new session's tasks; with ``spare``, launched
    once the runtime's spare is warm."""
    if spare:
        wait_until(lambda: spare_pids(rt), what="a warm spare")
    fe.create_session(sid, app)
    try:
        views = []
        for _ in range(2):  # the instance keeps serving after its first task
            task = fe.run(sid, b"view")
            assert task.status.state == types_pb2.Succeed, task
            views.append(json.loads(task.spec.output))
        assert views[0] == views[1]
        view: dict[str, Any] = views[0]
    finally:
        fe.close_session(sid)
    return view


def normalized(view: dict[str, Any], rt: LocalRuntime) -> dict[str, Any]:
    """``view`` without what is named per runtime or per launch."""
    view = dict(view)
    view["env"] = {k: v for k, v in view["env"].items() if k not in _PER_LAUNCH_ENV}
    del view["prestarted"]
    text = json.dumps(view).replace(str(Path(rt.home).resolve()), "<home>")
    return dict(json.loads(_UUID.sub("<id>", text.replace(str(rt.home), "<home>"))))


def compare(
    spared: tuple[LocalRuntime, Frontend],
    fresh: tuple[LocalRuntime, Frontend],
    app: str,
    command: str,
    args: list[str],
    **fields: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Register ``app`` on both runtimes, probe both; return (prestarted view, fresh view)."""
    views = []
    for (rt, fe), tag in ((spared, "s"), (fresh, "f")):
        register(fe, app, command, args, **fields)
        views.append(probe(rt, fe, app, f"{app}-{tag}", spare=tag == "s"))
    with_spare, without = views
    assert with_spare["prestarted"] is True
    assert without["prestarted"] is False
    assert normalized(with_spare, spared[0]) == normalized(without, fresh[0])
    return with_spare, without


def test_script_launch_matches_a_fresh_one(
    spared: tuple[LocalRuntime, Frontend], fresh: tuple[LocalRuntime, Frontend], tmp_path: Path
) -> None:
    """`python script.py args` on a spare: same argv, sys.path, env, cwd, __main__, fds, group."""
    (tmp_path / "probe_link.py").symlink_to(SERVICES / "prestart_probe.py")
    with_spare, _ = compare(
        spared,
        fresh,
        "pre-script",
        sys.executable,
        ["probe_link.py", "a b", "--flag"],
        working_directory=str(tmp_path),
        env={"PROBE_MARK": "script", "PYTHONPATH": f"rel:{tmp_path}//x/:"},
    )
    assert with_spare["argv"] == ["probe_link.py", "a b", "--flag"]
    assert with_spare["path"][:4] == [
        str(SERVICES),  # the script's real folder
        str(tmp_path / "rel"),
        str(tmp_path / "x"),
        str(tmp_path),
    ]
    assert with_spare["main_file"] == str(tmp_path / "probe_link.py")
    assert with_spare["stdin"] == "/dev/null" and with_spare["pgid"] and with_spare["sid"]


def test_module_launch_matches_a_fresh_one(
    spared: tuple[LocalRuntime, Frontend], fresh: tuple[LocalRuntime, Frontend]
) -> None:
    """`python -m module args` (a bare `python` on PATH, PYTHONPATH from the app) matches too."""
    with_spare, _ = compare(
        spared,
        fresh,
        "pre-module",
        "python",
        ["-m", "prestart_probe", "x"],
        env={"PROBE_MARK": "module", "PYTHONPATH": str(SERVICES)},
    )
    assert with_spare["argv"] == [str(SERVICES / "prestart_probe.py"), "x"]
    assert with_spare["main_spec"] == "prestart_probe"
    assert with_spare["path"][1] == str(SERVICES)
    assert with_spare["name"] == "python"


def test_prestarted_logs_land_in_the_instance_files(
    spared: tuple[LocalRuntime, Frontend],
) -> None:
    """A spare's stdout and stderr are the instance's own .out and .err files."""
    rt, fe = spared
    register(
        fe,
        "pre-logs",
        sys.executable,
        [str(SERVICES / "prestart_probe.py")],
        env={"PROBE_MARK": "logs-42"},
    )
    view = probe(rt, fe, "pre-logs", "pre-logs-1", spare=True)
    assert view["prestarted"] is True
    out, err = Path(view["stdout"]), Path(view["stderr"])
    assert out.parent == err.parent == Path(rt.home).resolve() / "logs"
    assert out.suffix == ".out" and err.suffix == ".err" and out.stem == err.stem
    assert out.read_text().splitlines()[0] == "out:logs-42"
    assert err.read_text().splitlines()[0] == "err:logs-42"


def test_a_shadowed_preload_gets_a_fresh_process(
    spared: tuple[LocalRuntime, Frontend], tmp_path: Path
) -> None:
    """A launch whose sys.path would find another copy of a preloaded module is not prestarted."""
    rt, fe = spared
    (tmp_path / "cloudpickle.py").write_text('PROBE_SHADOW = "local"\n')
    register(
        fe,
        "pre-shadow",
        "python",
        ["-m", "prestart_probe"],
        working_directory=str(tmp_path),
        env={"PYTHONPATH": str(SERVICES), "PROBE_IMPORT": "cloudpickle"},
    )
    view = probe(rt, fe, "pre-shadow", "pre-shadow-1", spare=True)
    assert view["shadow"] == "local" and view["prestarted"] is False
    log = (Path(rt.home) / "logs" / "runtime.log").read_text()
    assert "prestarted interpreter declined the launch" in log


def test_other_launches_are_fresh(spared: tuple[LocalRuntime, Frontend]) -> None:
    """Interpreter flags or a startup setting the spare lacks mean a fresh process."""
    rt, fe = spared
    script = str(SERVICES / "prestart_probe.py")
    register(fe, "pre-flag", sys.executable, ["-u", script])
    register(fe, "pre-env", sys.executable, [script], env={"PYTHONHASHSEED": "7"})
    assert probe(rt, fe, "pre-flag", "pre-flag-1", spare=True)["prestarted"] is False
    view = probe(rt, fe, "pre-env", "pre-env-1", spare=True)
    assert view["prestarted"] is False and view["env"]["PYTHONHASHSEED"] == "7"


def bind_failure(fe: Frontend, sid: str) -> str:
    """The first bind-failure event of a new session of the crashing app."""
    fe.create_session(sid, "pre-crash")
    fe.create_task(sid, b"x")

    def first_failure() -> str | None:
        session = fe.get_session(sid)
        if 1001 not in set(iter_codes(session)):
            return None
        return str(session.status.events[0].message)

    message = wait_until(first_failure, what=f"bind failure of {sid}")
    fe.close_session(sid)
    return message


def test_failing_service_gives_the_same_bind_error(
    spared: tuple[LocalRuntime, Frontend], fresh: tuple[LocalRuntime, Frontend]
) -> None:
    """A service that exits before binding fails the bind with the same message either way."""
    messages = []
    for rt, fe in (spared, fresh):
        register(fe, "pre-crash", sys.executable, [str(SERVICES / "prestart_crash.py")])
        if rt is spared[0]:
            wait_until(lambda rt=rt: spare_pids(rt), what="a warm spare")  # type: ignore[misc]
        message = bind_failure(fe, f"pre-crash-{len(messages)}")
        messages.append(_UUID.sub("<id>", message.replace(str(rt.home), "<home>")))
    assert messages[0] == messages[1]
    assert "exited before binding its socket (exit code 3)" in messages[0]


def test_spares_stop_with_the_runtime() -> None:
    """Stopping the runtime stops every spare, warm or still importing."""
    with LocalRuntime(set_env=False, extra_args=["--prestart", "2"]) as rt:
        pids = wait_until(lambda: len(spare_pids(rt)) == 2 and spare_pids(rt), what="two spares")
        assert rt.instance_pids() == []  # spares are not instances
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_prestart_zero_keeps_no_spare(fresh: tuple[LocalRuntime, Frontend]) -> None:
    """With --prestart 0 the runtime starts no spare process at all."""
    rt, fe = fresh
    register(fe, "pre-zero", sys.executable, [str(SERVICES / "prestart_probe.py")])
    assert probe(rt, fe, "pre-zero", "pre-zero-1", spare=False)["prestarted"] is False
    assert spare_pids(rt) == [] and spare_pids(rt, "flame-spare-imp") == []


def test_the_runtimes_own_pythonpath_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime started with PYTHONPATH: its instances, prestarted or not, see the same path."""
    monkeypatch.setenv("PYTHONPATH", str(SERVICES))
    with (
        LocalRuntime(set_env=False, extra_args=["--prestart", "1"]) as rt_spare,
        Frontend(rt_spare.endpoint) as fe_spare,
        LocalRuntime(set_env=False, extra_args=["--prestart", "0"]) as rt_fresh,
        Frontend(rt_fresh.endpoint) as fe_fresh,
    ):
        with_spare, _ = compare(
            (rt_spare, fe_spare),
            (rt_fresh, fe_fresh),
            "pre-rtpath",
            "python",
            ["-m", "prestart_probe"],
        )
    assert with_spare["path"][1] == str(SERVICES)
