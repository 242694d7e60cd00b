"""flamepy 0.6.0 driving the built-in ``flmexec`` as newer flamepy's ``tools.Sandbox`` does.

flamepy 0.6.0 has no ``tools.Sandbox``; these scenarios send what it sends over raw
``flamepy.core`` sessions: common_data = the Sandbox's attributes as JSON, task input =
``{"language", "code", "input": [bytes] | null, "runtime"?}``, output ``{"data": [bytes]}``.
Run like ``flamepy_scenarios.py`` (one scenario per process)::

    python flmexec_scenarios.py NAME '{"arg": ...}'
"""

from __future__ import annotations

import json
from typing import Any

import flamepy
from flamepy_scenarios import attempt, main, outcome, scenario, session_json

APP = "flmexec"


def sandbox_attr(language: str, runtime: str | None = None) -> bytes:
    """common_data of a Sandbox session (newer flamepy's ``_encode_attr``)."""
    attr = {
        "language": language,
        "runtime": runtime,
        "min_instances": 0,
        "max_instances": None,
        "resreq": None,
    }
    return json.dumps(attr).encode()


def sandbox_task(language: str, code: str, data: bytes | None, runtime: str | None) -> bytes:
    """A task input as the Sandbox's ``run_code`` encodes it (``runtime`` only when set)."""
    payload: dict[str, Any] = {
        "language": language,
        "code": code,
        "input": None if data is None else list(data),
    }
    if runtime is not None:
        payload["runtime"] = runtime
    return json.dumps(payload).encode()


def app_json(app: Any) -> dict[str, Any] | None:
    if app is None:
        return None
    schema = app.schema
    return {
        "name": app.name,
        "command": app.command,
        "arguments": app.arguments,
        "url": app.url,
        "installer": app.installer,
        "input_schema": None if schema is None else schema.input,
        "output_schema": None if schema is None else schema.output,
    }


@scenario
def flmexec_listed() -> dict[str, Any]:
    return {
        "names": sorted(a.name for a in flamepy.list_applications()),
        "flmexec": app_json(flamepy.get_application(APP)),
    }


@scenario
def flmexec_sandbox(
    language: str, runtime: str | None, scripts: list[dict[str, Any]]
) -> dict[str, Any]:
    """A Sandbox session: run each script in turn (run_code), then all at once (submit_code),
    then open the session again by id (Sandbox.open) and read its attributes back."""
    ssn = flamepy.create_session(APP, common_data=sandbox_attr(language, runtime))
    try:
        tasks = [sandbox_task(language, s["code"], s.get("input"), runtime) for s in scripts]
        run_code = [attempt(lambda t=t: ssn.invoke(t)) for t in tasks]
        futures = [ssn.run(t) for t in tasks]
        submit_code = [outcome(f) for f in futures]
        reopened = flamepy.open_session(ssn.id)
        return {
            "run_code": run_code,
            "submit_code": submit_code,
            "reopened_app": reopened.application,
            "reopened_attr": json.loads(reopened.common_data() or b"null"),
            "session": session_json(flamepy.get_session(ssn.id)),
        }
    finally:
        ssn.close()


@scenario
def flmexec_raw(inputs: list[bytes]) -> dict[str, Any]:
    """A plain flamepy session of flmexec (no common_data), as Flame's own e2e tests use it."""
    ssn = flamepy.create_session(APP)
    try:
        return {"outputs": [outcome(ssn.run(data)) for data in inputs]}
    finally:
        ssn.close()


if __name__ == "__main__":
    main()
