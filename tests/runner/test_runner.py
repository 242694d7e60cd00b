"""flame_agents.runner end to end: a real runtime installs the packaged project, real instances
run the exposed function, class and object, and closing the runner removes what it made."""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from flame_agents import cache, core
from flame_agents.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
    ObjectNotFoundError,
    TaskFailedError,
)
from flame_agents.runner import ObjectFuture, Runner
from flame_agents.testing import LocalRuntime

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent / "project"
WAIT = 90.0  # seconds; a bound against hangs, not a performance claim


@pytest.fixture(scope="module")
def demo() -> Iterator[ModuleType]:
    """The project's module, imported from the project folder as the instances import it."""
    sys.path.insert(0, str(PROJECT))
    try:
        yield importlib.import_module("runner_demo")
    finally:
        sys.path.remove(str(PROJECT))
        sys.modules.pop("runner_demo", None)


@pytest.fixture(scope="module")
def runner(runtime: LocalRuntime, demo: ModuleType) -> Iterator[Runner]:
    """One runner of the test project for the module's tests."""
    with Runner("runner-tests", project=PROJECT) as r:
        yield r


def test_function_calls_run_on_instances(runner: Runner, demo: ModuleType) -> None:
    """Each call of a function service runs it remotely and its future gives the result."""
    square = runner.service(demo.square)
    futures = [square(i) for i in range(4)]
    assert all(isinstance(f, ObjectFuture) for f in futures)
    assert [f.get(timeout=WAIT) for f in futures] == [0, 1, 4, 9]
    assert sorted(runner.get(futures)) == [0, 1, 4, 9]


def test_class_is_instantiated_on_the_instance(runner: Runner, demo: ModuleType) -> None:
    """A class service makes its object on the instance and calls its public methods there."""
    tally = runner.service(demo.Tally, autoscale=False)
    assert tally.methods == ("add", "where")
    assert tally.add(2).get(timeout=WAIT) == 2  # Tally() made remotely, starting at 0
    assert tally.where().get(timeout=WAIT) != os.getpid()


def test_object_keeps_its_state_between_calls(runner: Runner, demo: ModuleType) -> None:
    """An object service is one instance whose state carries from call to call (and is saved
    to its session's cache object), while the client's own object is left unchanged."""
    local = demo.Tally(10)
    tally = runner.service(local)
    assert tally.add(5).get(timeout=WAIT) == 15
    assert tally.add(1).get(timeout=WAIT) == 16
    assert local.total == 10
    saved = core.get_session(tally.session_id).common_data
    assert saved is not None
    stored = cache.get_object(cache.ObjectRef.decode(saved))
    import cloudpickle

    assert cloudpickle.loads(stored).obj.total == 16


def test_futures_and_refs_as_arguments(runner: Runner, demo: ModuleType) -> None:
    """Futures and ObjectRefs passed as arguments (positional or keyword) reach the remote
    code as the values they stand for; a coroutine function's result is awaited."""
    square = runner.service(demo.square)
    add = runner.service(demo.add)
    assert add(square(3), b=square(4)).get(timeout=WAIT) == 25
    first = square(2)
    assert isinstance(first.ref(timeout=WAIT), cache.ObjectRef)
    assert add(first.ref(), first).get(timeout=WAIT) == 8
    shared = runner.put_object([1, 2, 3])
    assert runner.service(demo.total)(shared).get(timeout=WAIT) == 6
    chained = square(add(1, b=1))
    assert list(runner.select([chained])) == [chained]
    assert chained.get(timeout=WAIT) == 4


def test_a_call_on_an_unfinished_future_does_not_wait_for_it(
    runner: Runner, demo: ModuleType, tmp_path: Path
) -> None:
    """A call given an unfinished future returns its own future at once; it is sent, and
    finishes, after the argument's call finishes."""
    gate = tmp_path / "gate"
    first = runner.service(demo.when_exists)(str(gate), 3)
    square = runner.service(demo.square)
    made: list[ObjectFuture] = []
    caller = threading.Thread(target=lambda: made.append(square(first)))
    try:
        caller.start()
        caller.join(WAIT)
        assert made, "the call waited for its unfinished argument"
        assert not first.done() and not made[0].done()
    finally:
        gate.touch()  # lets the first call finish, whatever happened
        caller.join(WAIT)
    assert made[0].get(timeout=WAIT) == 9


def test_remote_error_reaches_the_caller(runner: Runner, demo: ModuleType) -> None:
    """A remote exception reaches the caller as TaskFailedError naming the remote class, its
    message and frames; a call given the failed result as an argument fails the same way."""
    fail = runner.service(demo.fail)
    failed = fail("boom from the instance")
    with pytest.raises(TaskFailedError) as info:
        failed.get(timeout=WAIT)
    assert info.value.remote_type == "DemoError"
    assert "DemoError: boom from the instance" in str(info.value)
    assert "runner_demo.py" in (info.value.remote_traceback or "")
    with pytest.raises(TaskFailedError) as dependent:
        runner.service(demo.square)(failed).wait(timeout=WAIT)
    assert dependent.value.remote_type == "DemoError"
    assert "was not sent" in str(dependent.value)


def test_bad_input_is_refused_with_clear_errors(runner: Runner, demo: ModuleType) -> None:
    """Objects without public methods, calling a class service, private or unknown methods,
    unpicklable or nested-future arguments and impossible scaling raise InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match="no public method"):
        runner.service(object())
    with pytest.raises(InvalidArgumentError, match="cannot autoscale"):
        runner.service(demo.Tally(), autoscale=True)
    with pytest.raises(InvalidArgumentError, match="warmup must be a non-negative int"):
        runner.service(demo.square, warmup=-1)
    tally = runner.service(demo.Tally)
    with pytest.raises(InvalidArgumentError, match="cannot be called; call one of its methods"):
        tally(1)
    with pytest.raises(InvalidArgumentError, match="only public methods") as private:
        tally._secret()
    assert isinstance(private.value, AttributeError)
    assert not hasattr(tally, "missing")
    with pytest.raises(InvalidArgumentError, match="has no remote method 'missing'"):
        tally.call("missing")
    square = runner.service(demo.square)
    with pytest.raises(InvalidArgumentError, match="cannot be pickled"):
        square(threading.Lock())
    with pytest.raises(InvalidArgumentError, match="only be passed as an argument by itself"):
        runner.service(demo.total)([square(1)])


def test_existing_application_names(runner: Runner) -> None:
    """A taken name is refused with fail_if_exists, and a non-runner application never reused."""
    with pytest.raises(AlreadyExistsError, match="already exists"):
        Runner(runner.name, fail_if_exists=True, project=PROJECT)
    with pytest.raises(AlreadyExistsError, match="not a runner application"):
        Runner("flmping", project=PROJECT)


def test_close_removes_application_sessions_and_objects(
    runtime: LocalRuntime, demo: ModuleType
) -> None:
    """The application installs the uploaded package and runs our module; close() closes the
    sessions, unregisters the application and deletes the package and every result from the
    cache; the runner and its services then refuse new calls."""
    name = "runner-close-test"
    runner = Runner(name, project=PROJECT)
    square = runner.service(demo.square)
    result = square(5)
    assert result.get(timeout=WAIT) == 25
    ref = result.ref()
    package = cache.ObjectRef(ref.endpoint, f"{name}/pkg/{name}.tar.gz")
    assert cache.fetch_raw(package).base
    app = core.get_application(name)
    assert app is not None
    assert app.spec.arguments == ("-m", "flame_agents.runner")  # the built-in flmrun's, ours
    assert (app.spec.url, app.spec.installer) == (f"{ref.endpoint}/{package.key}", "python")

    runner.close()

    assert core.get_application(name) is None
    with pytest.raises(NotFoundError):  # unregistering drops the application's closed sessions
        core.get_session(square.session_id)
    for gone in (ref, package):
        with pytest.raises(ObjectNotFoundError):
            cache.fetch_raw(gone)
    with pytest.raises(InvalidStateError, match="is closed"):
        square(1)
    with pytest.raises(InvalidStateError, match="is closed"):
        runner.service(demo.square)
    runner.close()  # idempotent
