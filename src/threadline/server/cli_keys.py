"""``threadline keys create|list|revoke``: API keys, stored in the configured database."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.table import Table

from threadline.server.auth.roles import KEY_ROLES, parse_role
from threadline.server.cli_store import db_option, open_configured_store
from threadline.server.query.projects import list_projects
from threadline.server.store.credentials import KeyExists, create_key, list_keys, revoke_key


@click.group("keys")
def keys_group() -> None:
    """API keys (sent as 'Authorization: Bearer <key>' by the SDK, OTLP exporters and the API)."""


@keys_group.command("create")
@click.option("--name", required=True, help="A unique name for the key (to list and revoke it).")
@click.option("--role", required=True, type=click.Choice([r.value for r in KEY_ROLES]),
              help="ingest: send spans only; viewer: read; member: read, annotate, close sessions, run evals; "
              "admin: everything.")
@click.option("--project", "projects", multiple=True, help="Limit the key to this project (repeatable).")
@db_option
def create(name: str, role: str, projects: tuple[str, ...], database_url: str | None) -> None:
    """Create a key and print it, alone, on the last line (it is shown only this once)."""
    name = name.strip()
    if not name:
        raise click.UsageError("--name must not be empty")
    if any(not p.strip() for p in projects):
        raise click.UsageError("--project must not be empty")
    _settings, store = open_configured_store(database_url)
    try:
        with store.read() as conn:  # a key may be made before its project's first span: warn, do not refuse
            known = {project.name for project in list_projects(conn)}
        for project in sorted(set(projects) - known):
            click.echo(f"note: project {project!r} has no data yet (check the spelling if it should)", err=True)
        with store.write() as tx:
            key, secret = create_key(tx, name, parse_role(role).value, list(projects) or None, time.time_ns())
    except KeyExists as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.dispose()
    scope = ", ".join(key.projects) if key.projects else "every project"
    click.echo(f"created key {key.name!r} (role {key.role}, {scope}); store it now, it is not shown again:", err=True)
    click.echo(secret)


@keys_group.command("list")
@db_option
def list_command(database_url: str | None) -> None:
    """List keys: name, role, projects, the key's first characters, when created."""
    _settings, store = open_configured_store(database_url)
    try:
        with store.read() as conn:
            keys = list_keys(conn)
    finally:
        store.dispose()
    table = Table("name", "role", "projects", "key", "created (UTC)")
    for key in keys:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(key.created_ns / 1e9))
        table.add_row(key.name, key.role, ", ".join(key.projects) if key.projects else "all", f"{key.hint}…", created)
    Console().print(table if keys else "no API keys")


@keys_group.command("revoke")
@click.argument("name")
@db_option
def revoke(name: str, database_url: str | None) -> None:
    """Revoke the key called NAME: it stops working at once, on every server sharing the database."""
    _settings, store = open_configured_store(database_url)
    try:
        with store.write() as tx:
            found = revoke_key(tx, name)
    finally:
        store.dispose()
    if not found:
        raise click.ClickException(f"no API key named {name!r} (see `threadline keys list`)")
    click.echo(f"revoked key {name!r}")
