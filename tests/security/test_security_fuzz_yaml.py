"""Malformed application YAML and flame.yaml: every input loads or fails with ConfigError, and
the CLI reports it in one line without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_support import FUZZ_EXAMPLES, FUZZ_TIMEOUT

from flame_agents import config
from flame_agents.cli.app_yaml import load_app_text
from flame_agents.errors import ConfigError

SNIPPETS = [
    "",
    "---",
    ":",
    "- - -",
    "{",
    "[",
    "metadata: {name: ../x}\nspec: {command: python}",
    "metadata: {name: 'a/b'}\nspec: {command: python}",
    'metadata: {name: "a\\0b"}\nspec: {command: python}',
    "metadata: {name: ok}\nspec: {command: [1, 2]}",
    "metadata: {name: ok}\nspec: {max_instances: -1}",
    "metadata: {name: ok}\nspec: {max_instances: 99999999999999999999}",
    "metadata: {name: ok}\nspec: {delay_release: 1e400}",
    "metadata: {name: ok}\nspec: {shim: Nope}",
    "metadata: {name: ok}\nspec: {environments: [a, b]}",
    "metadata: {name: ok}\nspec: {schema: {input: '{not json'}}",
    "metadata: {name: ok}\nspec: {working_directory: '\\0'}",
    "metadata: !!python/object/apply:os.system ['echo pwned']",
    "!!binary aGVsbG8=",
    "&a [*a]",
    "metadata: {name: ok, extra: 1}\nspec: {}\nother: 2",
    "metadata: {name: ok}\nspec: {command: python}\n---\nmetadata: {name: ok}\nspec: {}",
]

LAUGHS = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["metadata: {name: *a8}", "spec: {command: python, arguments: *a8, labels: *a8}"]
)
"""Nine levels of nine aliases ("billion laughs"): fine as long as nothing walks it fully."""

SPEC_KEYS = [
    *("command", "arguments", "environments", "max_instances", "shim", "schema"),
    *("working_directory", "delay_release", "labels", "url", "bogus"),
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["../x", "a/b", "\x00", "*", "x" * 300]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.one_of(values, st.fixed_dictionaries({"name": values})),
        "spec": st.one_of(
            values,
            st.dictionaries(
                st.sampled_from(SPEC_KEYS),
                values,
                max_size=4,
            ),
        ),
        "extra": values,
    },
)

pytestmark = pytest.mark.timeout(FUZZ_TIMEOUT)


def _load(text: str, base_dir: Path) -> None:
    try:
        load_app_text(text, source="fuzz.yaml", base_dir=base_dir)
    except ConfigError as exc:
        assert "fuzz.yaml" in str(exc)


@settings(max_examples=FUZZ_EXAMPLES * 3, deadline=None, database=None)
@given(text=st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=200)))
def test_app_yaml_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    """Arbitrary text loads as application documents or raises ConfigError naming the file."""
    _load(text, tmp_path_factory.getbasetemp())


@settings(
    max_examples=FUZZ_EXAMPLES * 3,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(docs=st.lists(documents, min_size=1, max_size=3))
def test_app_yaml_structures(tmp_path_factory: pytest.TempPathFactory, docs: list[object]) -> None:
    """Well-formed YAML of the wrong shape (types, names, fields) raises ConfigError only."""
    _load(yaml.safe_dump_all(docs), tmp_path_factory.getbasetemp())


def test_app_yaml_python_tags_and_aliases(tmp_path: Path) -> None:
    """Python object tags are never constructed, and an alias bomb is refused without
    expanding it."""
    marker = tmp_path / "pwned"
    tag = f"metadata: !!python/object/apply:os.system ['touch {marker}']\nspec: {{}}"
    with pytest.raises(ConfigError):
        load_app_text(tag, source="fuzz.yaml", base_dir=tmp_path)
    assert not marker.exists()
    with pytest.raises(ConfigError):
        load_app_text(LAUGHS, source="fuzz.yaml", base_dir=tmp_path)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None)
@given(text=st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=200), values.map(yaml.dump)))
def test_flame_yaml(text: str) -> None:
    """Any ~/.flame/flame.yaml content resolves or raises ConfigError naming the file."""
    home = Path(os.environ["HOME"])
    path = home / ".flame" / "flame.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    try:
        config.resolve_endpoints()
        config.auth_token()
    except ConfigError as exc:
        assert "flame.yaml" in str(exc)


@pytest.fixture(autouse=True)
def _private_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOME points at a temp folder so flame.yaml fuzzing never touches the user's file."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    for key in ("FLAME_ENDPOINT", "FLAME_CACHE_ENDPOINT", "FLAME_CA_FILE", "FLAME_AGENTS_TOKEN"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("text", ["{", "metadata: {name: ../x}\nspec: {}", LAUGHS])
def test_cli_register_reports_bad_yaml(tmp_path: Path, text: str) -> None:
    """`flame-agents register -f` with malformed YAML exits non-zero with a one-line error and
    no traceback, before contacting any runtime."""
    path = tmp_path / "app.yaml"
    path.write_text(text)
    env = {**os.environ, "FLAME_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [sys.executable, "-m", "flame_agents.cli", "register", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr or "app.yaml" in proc.stderr
