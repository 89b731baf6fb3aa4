"""The public names of ``threadline`` are pinned: changing them is a deliberate, visible act."""

from __future__ import annotations

import subprocess
import sys

import threadline
import threadline.sdk

PUBLIC = [
    "ContextAttributesSpanProcessor",
    "ThreadPoolExecutor",
    "__version__",
    "register",
    "using_attributes",
    "using_metadata",
    "using_prompt_template",
    "using_session",
    "using_tags",
    "using_user",
]


def test_public_names_are_pinned() -> None:
    assert sorted(threadline.__all__) == PUBLIC
    assert sorted(threadline.sdk.__all__) == [name for name in PUBLIC if name != "__version__"]
    for name in PUBLIC:
        assert getattr(threadline, name) is not None
    for name in threadline.sdk.__all__:
        assert getattr(threadline, name) is getattr(threadline.sdk, name)


def test_version_is_a_string() -> None:
    assert isinstance(threadline.__version__, str)
    assert threadline.__version__[0].isdigit()


def test_public_callables_are_documented() -> None:
    for name in threadline.__all__:
        if name != "__version__":
            assert (getattr(threadline, name).__doc__ or "").strip(), name


def test_importing_the_sdk_loads_neither_the_server_nor_optional_packages() -> None:
    code = (
        "import sys, threadline\n"
        "bad = [m for m in sys.modules if m.startswith('threadline.server') or m.split('.')[0] in "
        "('sqlalchemy', 'fastapi', 'uvicorn', 'openinference', 'pydantic_settings', 'grpc')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
