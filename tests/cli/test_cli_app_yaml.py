"""The application YAML loader: the §6 format, multi-document files, errors naming the field."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flame_agents.cli.app_yaml import SPEC_FIELDS, load_app_file, load_app_text
from flame_agents.errors import ConfigError
from flame_agents.types import ApplicationSpec, Shim

SEED_YAML = """\
metadata:
  name: echo-app
spec:
  working_directory: /opt/examples/echo
  command: /usr/bin/python
  arguments:
    - echo_service.py
  environments:
    FLAME_LOG_LEVEL: INFO
"""


def _doc(spec: dict[str, Any], name: str = "app") -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": spec}


def _dump(*docs: Any) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def test_seed_example_loads() -> None:
    """The user guide's application YAML loads with every field as written."""
    [doc] = load_app_text(SEED_YAML, source="echo-app.yaml")
    assert doc.name == "echo-app"
    assert doc.index == 1
    assert doc.spec == {
        "working_directory": "/opt/examples/echo",
        "command": "/usr/bin/python",
        "arguments": ["echo_service.py"],
        "environments": {"FLAME_LOG_LEVEL": "INFO"},
    }


def test_every_field_loads_and_converts_to_an_application_spec() -> None:
    """A document using every spec field loads and converts to the client's ApplicationSpec."""
    spec = {
        "shim": "host",
        "image": "img",
        "description": "d",
        "labels": ["a", "b"],
        "command": "python",
        "arguments": ["x.py", "--flag"],
        "environments": {"A": "1"},
        "working_directory": "/srv/app",
        "max_instances": 3,
        "delay_release": 5,
        "schema": {"input": '{"type": "string"}', "output": "{}", "common_data": "{}"},
        "url": "file:///tmp/pkg.tar.gz",
        "installer": "python",
    }
    assert set(spec) == set(SPEC_FIELDS)
    [doc] = load_app_text(_dump(_doc(spec)))
    assert doc.spec["shim"] == "Host"
    converted = ApplicationSpec.from_dict(doc.spec)
    assert converted.shim is Shim.HOST
    assert converted.arguments == ("x.py", "--flag")
    assert converted.schema is not None and converted.schema.input == '{"type": "string"}'
    assert converted.delay_release == 5


def test_relative_working_directory_is_resolved_against_the_yaml_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative working_directory means "relative to the YAML file", whatever the cwd."""
    folder = tmp_path / "examples" / "echo"
    folder.mkdir(parents=True)
    (folder / "echo-app.yaml").write_text(_dump(_doc({"working_directory": "."})))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    [doc] = load_app_file(Path("..") / "examples" / "echo" / "echo-app.yaml")
    assert doc.spec["working_directory"] == str(folder.resolve())


def test_multi_document_file_skips_empty_documents(tmp_path: Path) -> None:
    """Several documents separated by --- load in order; empty ones are skipped."""
    one, two = _dump(_doc({"command": "a"}, "one")), _dump(_doc({"command": "b"}, "two"))
    text = f"{one}---\n---\n{two}"  # document 2 is empty
    docs = load_app_text(text)
    assert [(d.name, d.index) for d in docs] == [("one", 1), ("two", 3)]


def test_unknown_field_lists_the_known_ones() -> None:
    """A misspelt spec field is rejected with the list of known fields."""
    with pytest.raises(ConfigError) as info:
        load_app_text(_dump(_doc({"comand": "python"})), source="echo-app.yaml")
    message = str(info.value)
    assert message.startswith("echo-app.yaml, document 1: spec.comand is not a known field")
    for name in SPEC_FIELDS:
        assert name in message
    assert info.value.field == "spec.comand"


def test_arguments_not_a_list_names_the_field() -> None:
    """The brief's example error reads exactly as promised."""
    with pytest.raises(ConfigError) as info:
        load_app_text(_dump(_doc({"arguments": 3})), source="echo-app.yaml")
    assert str(info.value) == (
        "echo-app.yaml, document 1: spec.arguments must be a list of strings, got int"
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("spec: {}\n", "metadata.name"),
        ("metadata: {}\n", "metadata.name"),
        ("metadata: {name: -bad}\n", "metadata.name"),
        ("metadata: {name: a..b}\n", "metadata.name"),
        ("metadata: {name: 7}\n", "metadata.name"),
        ("metadata: {name: a, id: b}\n", "metadata.id"),
        ("metadata: {name: a}\nkind: App\n", "kind"),
        ("metadata: {name: a}\nspec: {schema: {input: '{nope'}}\n", "spec.schema.input"),
        ("metadata: {name: a}\nspec: {schema: {inputs: '{}'}}\n", "spec.schema.inputs"),
        ("metadata: {name: a}\nspec: {environments: {PORT: 8080}}\n", "spec.environments.PORT"),
        ("metadata: {name: a}\nspec: {arguments: [run, 1]}\n", "spec.arguments[1]"),
        ("metadata: {name: a}\nspec: {max_instances: -1}\n", "spec.max_instances"),
        ("metadata: {name: a}\nspec: {delay_release: true}\n", "spec.delay_release"),
        ("metadata: {name: a}\nspec: {shim: docker}\n", "spec.shim"),
    ],
)
def test_malformed_documents_name_the_field(text: str, field: str) -> None:
    """Each kind of mistake is reported against the field that holds it."""
    with pytest.raises(ConfigError) as info:
        load_app_text(text, source="app.yaml")
    assert f"app.yaml, document 1: {field} " in str(info.value)
    assert info.value.field == field


def test_duplicate_names_are_rejected() -> None:
    """Two documents registering the same name are a mistake, reported on the second."""
    with pytest.raises(ConfigError, match=r"document 2: metadata.name 'x' is already defined"):
        load_app_text(_dump(_doc({}, "x"), _doc({}, "x")))


def test_invalid_yaml_names_the_document() -> None:
    """A YAML syntax error names the document it is in."""
    with pytest.raises(ConfigError, match=r"f.yaml, document 2: not valid YAML"):
        load_app_text(_dump(_doc({}, "a")) + "---\nmetadata: [unclosed\n", source="f.yaml")


def test_empty_or_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """No documents, or no file, is a clear ConfigError rather than a crash."""
    with pytest.raises(ConfigError, match="no application documents"):
        load_app_text("---\n", source="empty.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_app_file(tmp_path / "missing.yaml")


# -- generated malformed documents -----------------------------------------------------------

_text = st.text(st.characters(codec="ascii", categories=("L", "N")), max_size=8)
_not_string = st.one_of(
    st.integers(), st.booleans(), st.floats(allow_nan=False), st.lists(_text, max_size=2)
)
_not_list = st.one_of(
    st.integers(), st.booleans(), _text, st.dictionaries(_text, _text, min_size=1, max_size=2)
)
_bad_list = st.lists(st.integers(), min_size=1, max_size=3).map(lambda xs: ["ok", *xs])
_bad_count = st.one_of(
    _text,
    st.booleans(),
    st.floats(allow_nan=False),
    st.integers(max_value=-1),
    st.integers(min_value=2**63),
)
_WRONG: dict[str, st.SearchStrategy[Any]] = {
    "string": _not_string,
    "string_list": st.one_of(_not_list, _bad_list),
    "string_map": st.one_of(
        st.integers(),
        st.lists(_text, min_size=1, max_size=2),
        st.dictionaries(
            st.from_regex(r"[A-Z]{1,5}", fullmatch=True), st.integers(), min_size=1, max_size=2
        ),
    ),
    "uint32": st.one_of(_bad_count, st.integers(min_value=2**32)),
    "seconds": _bad_count,
    "shim": st.one_of(st.integers(), _text.filter(lambda s: s.lower() not in ("host", "wasm"))),
    "schema": st.one_of(
        st.integers(),
        _text,
        st.just({"input": "{not json"}),
        st.just({"outputs": "{}"}),
    ),
}


@st.composite
def _malformed_file(draw: st.DrawFn) -> tuple[str, int, str]:
    """A file whose document ``k`` has one spec field of the wrong shape; valid ones before."""
    field = draw(st.sampled_from(sorted(SPEC_FIELDS)))
    bad = draw(_WRONG[SPEC_FIELDS[field]])
    before = draw(st.integers(min_value=0, max_value=2))
    docs = [_doc({"command": "python"}, f"ok{i}") for i in range(before)]
    docs.append(_doc({"command": "python", field: bad}, "broken"))
    return _dump(*docs), before + 1, field


@settings(max_examples=150, deadline=None)
@given(_malformed_file())
def test_generated_malformed_documents_name_document_and_field(
    case: tuple[str, int, str],
) -> None:
    """Any wrong-typed spec field fails with the file, the document number and the field."""
    text, index, field = case
    with pytest.raises(ConfigError) as info:
        load_app_text(text, source="gen.yaml")
    message = str(info.value)
    assert message.startswith(f"gen.yaml, document {index}: spec.{field}"), message
    assert info.value.document == index
    assert str(info.value.field).startswith(f"spec.{field}")


_valid_values: dict[str, st.SearchStrategy[Any]] = {
    "string": _text,
    "string_list": st.lists(_text, max_size=3),
    "string_map": st.dictionaries(st.from_regex(r"[A-Z]{1,5}", fullmatch=True), _text, max_size=3),
    "uint32": st.integers(0, 2**32 - 1),
    "seconds": st.integers(0, 2**63 - 1),
    "shim": st.sampled_from(["Host", "host", "Wasm", "wasm", "WASM"]),
    "schema": st.fixed_dictionaries({}, optional={"input": st.just('{"type": "object"}')}),
}


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(SPEC_FIELDS)).filter(lambda f: f != "working_directory"),
        st.none(),
        max_size=len(SPEC_FIELDS),
    ).flatmap(lambda keys: st.fixed_dictionaries({k: _valid_values[SPEC_FIELDS[k]] for k in keys}))
)
def test_generated_valid_documents_load_and_convert(spec: dict[str, Any]) -> None:
    """Any well-typed spec loads unchanged (shim normalized) and converts to ApplicationSpec."""
    [doc] = load_app_text(_dump(_doc(spec)))
    expected = dict(spec)
    if "shim" in expected:
        expected["shim"] = expected["shim"].capitalize()
    assert doc.spec == expected
    converted = ApplicationSpec.from_dict(doc.spec)
    assert converted.command == spec.get("command")
    assert json.loads(json.dumps(doc.spec)) == doc.spec  # plain data, safe to print as JSON
    assert os.sep not in doc.name
