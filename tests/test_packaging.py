"""Packaging promises: a light SDK face, and a helpful message when the server extra is missing."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("threadline.server", "sqlalchemy", "fastapi", "uvicorn", "alembic", "psycopg", "jinja2")


def test_importing_the_sdk_loads_no_server_dependency() -> None:
    code = (
        "import sys, threadline\n"
        f"loaded = [m for m in {HEAVY!r} if any(k == m or k.startswith(m + '.') for k in sys.modules)]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_serve_without_the_server_extra_says_how_to_install_it() -> None:
    # Simulate an install without the extra: make the server's dependencies unimportable.
    code = (
        "import sys\n"
        "for name in ('fastapi', 'sqlalchemy', 'uvicorn'): sys.modules[name] = None\n"
        "sys.argv = ['threadline', 'serve']\n"
        "from threadline.cli_entry import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install 'threadline[server]'" in result.stderr
    assert "Traceback" not in result.stderr
