"""Every setting and every CLI command is documented (the docs fail the build, like sqlite-utils)."""

from __future__ import annotations

from pathlib import Path

import click

from threadline.server.cli import cli
from threadline.server.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def command_paths(group: click.Group, prefix: str = "threadline") -> list[str]:
    paths = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        paths.append(path)
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, path))
    return paths


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [f"THREADLINE_{name.upper()}" for name in Settings.model_fields
               if f"`THREADLINE_{name.upper()}`" not in text]
    assert not missing, f"add these to docs/configuration.md: {missing}"


def test_every_setting_has_a_description() -> None:
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_every_cli_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    paths = command_paths(cli)
    assert "threadline serve" in paths
    missing = [path for path in paths if f"## {path}" not in text]
    assert not missing, f"add a '## <command>' section to docs/cli.md for: {missing}"
