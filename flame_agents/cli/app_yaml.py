"""Load and validate Flame application YAML (the ``flmctl register -f`` format).

One file may hold several documents separated by ``---``. Each document is::

    metadata: {name: echo-app}
    spec: {command: python, arguments: [echo_service.py], working_directory: ., ...}

Every error names the file, the document (1-based) and the field, so a user can fix it without
reading this code. A relative ``working_directory`` is resolved against the YAML file's folder, so
an example registers correctly from any current directory (Flame itself requires an absolute one).
:func:`require_runnable` adds what registration needs beyond the format: a Host application must
name the ``command`` its instances run.
``schemas/application.schema.json`` describes the same format; a test keeps the two in step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from flame_agents.errors import ConfigError

__all__ = [
    "METADATA_FIELDS",
    "SCHEMA_FIELDS",
    "SPEC_FIELDS",
    "TOP_LEVEL_FIELDS",
    "AppDocument",
    "FieldKind",
    "load_app_file",
    "load_app_text",
    "require_runnable",
]

FieldKind = Literal["string", "string_list", "string_map", "uint32", "seconds", "shim", "schema"]

TOP_LEVEL_FIELDS = ("metadata", "spec")
METADATA_FIELDS = ("name",)
SPEC_FIELDS: dict[str, FieldKind] = {
    "shim": "shim",
    "image": "string",
    "description": "string",
    "labels": "string_list",
    "command": "string",
    "arguments": "string_list",
    "environments": "string_map",
    "working_directory": "string",
    "max_instances": "uint32",
    "delay_release": "seconds",
    "schema": "schema",
    "url": "string",
    "installer": "string",
}
"""The fields of ``spec`` and how each is checked (Flame 0.6 ``ApplicationSpec``)."""
SCHEMA_FIELDS = ("input", "output", "common_data")
"""The fields of ``spec.schema``: JSON Schema documents given as JSON text."""

_SHIMS = {"host": "Host", "wasm": "Wasm"}
_UINT32_MAX = 2**32 - 1
_INT64_MAX = 2**63 - 1
# Flame's application name rule (checked on register): 1-253 chars of [A-Za-z0-9._-], not
# starting with '.' or '-', no '..'.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$")


@dataclass(frozen=True)
class AppDocument:
    """One validated application document."""

    name: str
    """``metadata.name``: the application name clients open sessions on."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The given ``spec`` fields only, normalized: ``shim`` is ``"Host"``/``"Wasm"``,
    ``working_directory`` is absolute, ``schema`` is a dict of JSON texts."""
    source: str = "<string>"
    """The file the document came from, for messages."""
    index: int = 1
    """1-based position of the document in its file."""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Checker:
    """Validates one document; every error it raises names the file, document and field."""

    def __init__(self, source: str, index: int, base_dir: Path | None) -> None:
        self.source = source
        self.index = index
        self.base_dir = base_dir

    def fail(self, path: str, problem: str) -> ConfigError:
        where = f"{self.source}, document {self.index}"
        return ConfigError(
            f"{where}: {path} {problem}" if path else f"{where}: {problem}",
            path=self.source,
            document=self.index,
            field=path,
        )

    def mapping(self, value: Any, path: str, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            if not path:
                raise self.fail("", f"the document must be a mapping, got {_type_name(value)}")
            raise self.fail(path, f"must be a mapping, got {_type_name(value)}")
        for key in value:
            if key not in known:
                full = f"{path}.{key}" if path else str(key)
                raise self.fail(full, f"is not a known field (known fields: {', '.join(known)})")
        return dict(value)

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {_type_name(value)}")
        return value

    def string_list(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list of strings, got {_type_name(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(
                    f"{path}[{i}]", f"must be a string, got {_type_name(item)} (quote it)"
                )
        return list(value)

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a mapping of names to strings, got {_type_name(value)}")
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise self.fail(path, f"has a name that is not a non-empty string: {key!r}")
            if not isinstance(item, str):
                # YAML turns 8080 and true into numbers and booleans; Flame wants strings.
                raise self.fail(
                    f"{path}.{key}", f"must be a string, got {_type_name(item)} (quote it)"
                )
        return dict(value)

    def integer(self, value: Any, path: str, *, maximum: int, unit: str = "") -> int:
        # bool is an int in Python, but `max_instances: true` is a mistake worth reporting.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(path, f"must be a whole number{unit}, got {_type_name(value)}")
        if not 0 <= value <= maximum:
            raise self.fail(path, f"must be between 0 and {maximum}{unit}, got {value}")
        return value

    def shim(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        try:
            return _SHIMS[text.lower()]
        except KeyError:
            raise self.fail(path, f"must be Host or Wasm, got {text!r}") from None

    def schema(self, value: Any, path: str) -> dict[str, str]:
        given = self.mapping(value, path, SCHEMA_FIELDS)
        out: dict[str, str] = {}
        for key, text in given.items():
            sub = f"{path}.{key}"
            self.string(text, sub)
            try:
                json.loads(text)
            except ValueError as exc:
                raise self.fail(sub, f"must be a JSON Schema as JSON text: {exc}") from None
            out[key] = text
        return out

    def working_directory(self, value: Any, path: str) -> str:
        text = self.string(value, path)
        if not text:
            return text  # Flame treats "" as unset
        wd = Path(text).expanduser()
        if not wd.is_absolute() and self.base_dir is not None:
            wd = self.base_dir / wd
        return str(wd.resolve()) if wd.is_absolute() else text

    def document(self, doc: Any) -> AppDocument:
        top = self.mapping(doc, "", TOP_LEVEL_FIELDS)
        if "metadata" not in top:
            raise self.fail("metadata.name", "is required")
        meta = self.mapping(top["metadata"], "metadata", METADATA_FIELDS)
        if "name" not in meta:
            raise self.fail("metadata.name", "is required")
        name = self.string(meta["name"], "metadata.name")
        if not _NAME_RE.match(name) or ".." in name:
            raise self.fail(
                "metadata.name",
                f"must be 1-253 characters of letters, digits, '.', '_' or '-', not starting "
                f"with '.' or '-' and without '..', got {name!r}",
            )
        raw = self.mapping(top.get("spec") or {}, "spec", tuple(SPEC_FIELDS))
        spec: dict[str, Any] = {}
        for key, value in raw.items():
            path = f"spec.{key}"
            kind = SPEC_FIELDS[key]
            if value is None:
                continue  # `key:` with nothing after it means "not set", as in Flame
            if key == "working_directory":
                spec[key] = self.working_directory(value, path)
            elif kind == "string":
                spec[key] = self.string(value, path)
            elif kind == "string_list":
                spec[key] = self.string_list(value, path)
            elif kind == "string_map":
                spec[key] = self.string_map(value, path)
            elif kind == "uint32":
                spec[key] = self.integer(value, path, maximum=_UINT32_MAX)
            elif kind == "seconds":
                spec[key] = self.integer(value, path, maximum=_INT64_MAX, unit=" of seconds")
            elif kind == "shim":
                spec[key] = self.shim(value, path)
            else:
                spec[key] = self.schema(value, path)
        return AppDocument(name=name, spec=spec, source=self.source, index=self.index)


def require_runnable(doc: AppDocument) -> None:
    """Raise :class:`~flame_agents.errors.ConfigError` unless ``doc`` can be launched.

    A Host application without ``spec.command`` registers on Flame but every instance of it
    fails to start; ``register`` and ``update`` refuse it up front instead. (Whether a
    ``working_directory`` exists is checked by the runtime, on the machine that runs it.)
    """
    if doc.spec.get("shim", "Host") == "Host" and not doc.spec.get("command"):
        raise _Checker(doc.source, doc.index, None).fail(
            "spec.command",
            "is required: the program each instance runs, e.g. `command: python` with "
            "`arguments: [service.py]`",
        )


def load_app_text(
    text: str, *, source: str = "<string>", base_dir: Path | None = None
) -> list[AppDocument]:
    """Parse and validate every application document in ``text``.

    ``base_dir`` anchors relative ``working_directory`` values; empty documents are skipped.
    Raises :class:`~flame_agents.errors.ConfigError` naming the document and the field.
    """
    docs: list[AppDocument] = []
    seen: dict[str, int] = {}
    index = 0
    try:
        for index, raw in enumerate(yaml.safe_load_all(text), start=1):
            if raw is None:
                continue
            doc = _Checker(source, index, base_dir).document(raw)
            if doc.name in seen:
                raise _Checker(source, index, base_dir).fail(
                    "metadata.name", f"{doc.name!r} is already defined in document {seen[doc.name]}"
                )
            seen[doc.name] = index
            docs.append(doc)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{source}, document {index + 1}: not valid YAML: {exc}",
            path=source,
            document=index + 1,
        ) from exc
    if not docs:
        raise ConfigError(f"{source}: no application documents found", path=source)
    return docs


def load_app_file(path: str | Path) -> list[AppDocument]:
    """Read ``path`` and return its validated application documents (see :func:`load_app_text`)."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}", path=str(path)) from exc
    return load_app_text(text, source=str(path), base_dir=file.resolve().parent)
