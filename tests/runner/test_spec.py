"""The application a runner registers: its own service module, started as the template says."""

from __future__ import annotations

from flame_agents.runner._runner import runner_spec
from flame_agents.types import Application, ApplicationSpec

URL = "grpc://127.0.0.1:9090/job/pkg/job.tar.gz"


def test_flame_template_is_followed_with_our_module() -> None:
    """A template running flamepy's runpy (Flame's flmrun) lends its command, arguments and
    environment, with flame_agents.runner in place of flamepy's module."""
    flmrun = Application(
        "flmrun",
        ApplicationSpec(
            command="${FLAME_HOME}/bin/uv",
            arguments=(
                "run",
                "--python",
                "python${FLAME_PYTHON_VERSION}",
                "python",
                "-m",
                "flamepy.runner.runpy",
            ),
            environments={"A": "1"},
            installer="python",
            delay_release=30,
        ),
    )
    spec = runner_spec("job", flmrun, url=URL, python_version="3.12")
    assert spec.command == "${FLAME_HOME}/bin/uv"
    assert spec.arguments[-2:] == ("-m", "flame_agents.runner")
    assert "flamepy" not in " ".join(spec.arguments)
    assert spec.environments == {"A": "1", "FLAME_PYTHON_VERSION": "3.12"}
    assert (spec.url, spec.installer, spec.delay_release) == (URL, "python", 30)


def test_without_a_flamepy_template_python_runs_our_module() -> None:
    """With no template, or one that does not run flamepy's runpy, the command is
    ``python -m flame_agents.runner`` and the package still goes through the installer."""
    other = Application("flmrun", ApplicationSpec(command="/bin/custom", arguments=("x",)))
    for template in (None, other):
        spec = runner_spec("job", template, url=URL, python_version=None)
        assert (spec.command, spec.arguments) == ("python", ("-m", "flame_agents.runner"))
        assert (spec.url, spec.installer, spec.environments) == (URL, "python", {})
