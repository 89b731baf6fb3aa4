"""``threadline users create|list|delete``: the people who log into the UI, in the configured database."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console
from rich.table import Table

from threadline.server.auth.passwords import hash_password, password_problem
from threadline.server.auth.roles import USER_ROLES, parse_role
from threadline.server.cli_store import db_option, open_configured_store
from threadline.server.store.people import PersonExists, create_person, delete_person, list_people


@click.group("users")
def users_group() -> None:
    """People who log into the web UI (with a name and a password)."""


def read_password() -> str:
    """The new password: asked twice (hidden) on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True, default="",
                                     show_default=False)
        return password
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@users_group.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice([r.value for r in USER_ROLES]),
              help="viewer: read; member: read, annotate, close sessions, run evals; admin: everything.")
@db_option
def create(name: str, role: str, database_url: str | None) -> None:
    """Create the user NAME; the password is read from stdin (asked twice on a terminal)."""
    name = name.strip()
    if not name:
        raise click.UsageError("NAME must not be empty")
    password = read_password()
    problem = password_problem(password)
    if problem is not None:
        raise click.ClickException(f"{problem}; no user was created")
    password_hash = hash_password(password)
    _settings, store = open_configured_store(database_url)
    try:
        with store.write() as tx:
            person = create_person(tx, name, parse_role(role, USER_ROLES).value, password_hash, time.time_ns())
    except PersonExists as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.dispose()
    click.echo(f"created user {person.name!r} (role {person.role})")


@users_group.command("list")
@db_option
def list_command(database_url: str | None) -> None:
    """List users: name, role, failed logins in a row, when created."""
    _settings, store = open_configured_store(database_url)
    try:
        with store.read() as conn:
            people = list_people(conn)
    finally:
        store.dispose()
    table = Table("name", "role", "failed logins", "created (UTC)")
    for person in people:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(person.created_ns / 1e9))
        table.add_row(person.name, person.role, str(person.failed_logins), created)
    Console().print(table if people else "no users")


@users_group.command("delete")
@click.argument("name")
@db_option
def delete(name: str, database_url: str | None) -> None:
    """Delete the user NAME: their logins end at once, on every server sharing the database."""
    _settings, store = open_configured_store(database_url)
    try:
        with store.write() as tx:
            found = delete_person(tx, name)
    finally:
        store.dispose()
    if not found:
        raise click.ClickException(f"no user named {name!r} (see `threadline users list`)")
    click.echo(f"deleted user {name!r}")
