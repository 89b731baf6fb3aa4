"""The API's OpenAPI document, as served at ``/openapi.json`` and committed as ``docs/openapi.json``.

``python -m threadline.server.web.openapi_snapshot`` (or ``make openapi``) writes the snapshot;
tests/api/test_openapi_snapshot.py fails when the served document differs from it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

SNAPSHOT = Path("docs/openapi.json")
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
#: Text no database can store is a 400 in every path, query and body (web/api/guards.py): the document says so.
NUL_FREE = r"^[^\x00]*$"


def _nul_free(schema: dict[str, Any], components: dict[str, Any], seen: set[str]) -> None:
    """Give every free string inside ``schema`` (following ``$ref`` into ``components``) :data:`NUL_FREE`."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen and name in components:
            seen.add(name)
            _nul_free(components[name], components, seen)
        return
    if schema.get("type") == "string" and not {"pattern", "enum", "const", "format"} & set(schema):
        schema["pattern"] = NUL_FREE
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            _nul_free(option, components, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _nul_free(schema[key], components, seen)
    for child in schema.get("properties", {}).values():
        _nul_free(child, components, seen)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document without FastAPI's 422 answers: a refused request is a 400 here."""
    spec = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                       description=app.description, routes=app.routes, tags=app.openapi_tags)
    schemas = spec.get("components", {}).get("schemas", {})
    inputs: set[str] = set()
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            for parameter in operation.get("parameters", []):
                _nul_free(parameter["schema"], schemas, inputs)
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _nul_free(media.get("schema", {}), schemas, inputs)
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    return spec


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`build_openapi` (built once) at the app's ``openapi_url``."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(spec: dict[str, Any]) -> str:
    """The snapshot's text: stable key order, two-space indents, a final newline."""
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def current_document() -> dict[str, Any]:
    """The document of the main app, built over a throwaway SQLite store (nothing is started)."""
    from threadline.server.settings import Settings
    from threadline.server.web.app import Runtime, create_app

    with tempfile.TemporaryDirectory() as home:
        runtime = Runtime(Settings(home=Path(home), database_url=None))
        try:
            return create_app(runtime).openapi()
        finally:
            runtime.store.dispose()


def main(argv: list[str] | None = None) -> int:
    """Write the snapshot (default ``docs/openapi.json``, or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else SNAPSHOT
    target.write_text(render(current_document()), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
