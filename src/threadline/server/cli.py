"""The ``threadline`` command line: a thin shell over the library.

Every command that works on data reads the same settings as ``serve`` (``--db`` /
``THREADLINE_DATABASE_URL`` / ``THREADLINE_HOME``) and works directly on that store.
"""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from threadline.server.settings import Settings


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line flags (not ``None``) on top."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'setting'}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"invalid configuration: {problems}") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="threadline")
def cli() -> None:
    """Threadline: sessions, users and traces of LLM applications."""


@cli.command()
@click.option("--host", default=None, help="Interface to bind (THREADLINE_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Main HTTP port: UI, API, OTLP/HTTP (THREADLINE_PORT, 6006).")
@click.option("--grpc-port", type=int, default=None, help="OTLP/gRPC port (THREADLINE_GRPC_PORT, 4317); 0 disables.")
@click.option("--otlp-http-port", type=int, default=None,
              help="OTLP/HTTP port (THREADLINE_OTLP_HTTP_PORT, 4318); 0 disables.")
@click.option("--db", "database_url", default=None,
              help="Database URL (THREADLINE_DATABASE_URL); default SQLite under THREADLINE_HOME.")
def serve(host: str | None, port: int | None, grpc_port: int | None, otlp_http_port: int | None,
          database_url: str | None) -> None:
    """Run the server (UI, REST API, OTLP/HTTP and OTLP/gRPC)."""
    from threadline.server.store.engine import StoreConfigError
    from threadline.server.web.serve import run

    settings = load_settings(host=host, port=port, grpc_port=grpc_port, otlp_http_port=otlp_http_port,
                             database_url=database_url)
    try:
        run(settings)
    except StoreConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc
