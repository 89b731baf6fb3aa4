"""The OpenAPI document a running server serves is the committed docs/openapi.json, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

from threadline.server.web.openapi_snapshot import render

from .conftest import Filled

SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = "the API's OpenAPI document changed: regenerate docs/openapi.json with `make openapi` and commit it"


def test_served_document_is_the_committed_snapshot(filled: Filled) -> None:
    served = filled.client.get("/openapi.json")
    assert served.status_code == 200
    assert render(served.json()) == SNAPSHOT.read_text(encoding="utf-8"), REGENERATE


def test_snapshot_declares_no_fastapi_422_and_the_error_shape() -> None:
    spec = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            if path.startswith("/v1/") and path != "/v1/traces":
                assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"}, (method, path)
