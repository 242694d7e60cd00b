"""The first-experience docs stay true to the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from flame_agents.cli._main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _verbs() -> list[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(subparsers.choices)


def test_every_verb_is_documented_in_cli_md() -> None:
    """docs/cli.md has a section for every verb the parser knows."""
    text = (ROOT / "docs" / "cli.md").read_text()
    for verb in _verbs():
        assert f"### `{verb}" in text or f"## `{verb}" in text, verb


def test_readme_starts_with_the_two_commands() -> None:
    """README.md opens with `make demo` and `make test`, before anything else."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[:5] == [
        "# flame-agents",
        "",
        "```bash",
        "make demo    # set-up on a fresh machine, then the demo on the embedded runtime",
        "make test    # set-up on a fresh machine, then lint, type checks and the full test suite",
    ]


def test_docs_link_to_existing_pages() -> None:
    """Relative links between README and docs/ point at files that exist."""
    import re

    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} -> {target}"
