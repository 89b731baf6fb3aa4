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


def test_the_servers_ingest_processes_do_not_load_the_sdk() -> None:
    # Decode and writer processes import threadline.server (so this package) but never use the
    # SDK; the OpenTelemetry SDK it would load costs each process memory.
    code = (
        "import sys\n"
        "import threadline.server.ingest.decoders, threadline.server.ingest.writer_process\n"
        "print(','.join(m for m in ('threadline.sdk', 'opentelemetry.sdk.trace') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_sdk_names_are_there_when_asked_for() -> None:
    code = (
        "import threadline\n"
        "from threadline import using_session, register\n"
        "from threadline.sdk import using_session as direct\n"
        "assert using_session is direct and callable(register)\n"
        "assert set(threadline.__all__) <= set(dir(threadline))\n"
        "assert isinstance(threadline.__version__, str) and threadline.__version__\n"
        "try:\n"
        "    threadline.using_sesion\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "module 'threadline' has no attribute 'using_sesion'"
