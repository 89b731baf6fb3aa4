"""Entry point of the ``threadline`` command; explains how to install the server when missing."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the server CLI, or say which extra to install."""
    try:
        from threadline.server.cli import cli
    except ImportError as exc:
        sys.stderr.write(
            f"threadline: the server is not installed ({exc.name or exc} is missing).\n"
            "Install it with:  pip install 'threadline[server]'\n"
        )
        raise SystemExit(2) from exc
    cli()
