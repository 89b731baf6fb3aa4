"""Annotations through the REST API and the stdlib Python client: upsert, bulk, list, delete, validation."""

from __future__ import annotations

import pytest

from threadline.annotations_client import AnnotationsClient, ThreadlineApiError, annotation

from .conftest import Env


def test_upsert_update_list_delete(env: Env) -> None:
    conv = env.sent["notes"][1]
    sid, trace_id = conv.session_id, conv.turns[1].trace_id
    path = "/v1/projects/notes/annotations"
    first = env.client.post(path, json={"target_kind": "session", "target_id": sid, "name": "quality",
                                        "label": "bad", "score": 0.2, "identifier": "alice",
                                        "explanation": "went in circles", "metadata": {"ticket": 7}})
    assert first.status_code == 200, first.text
    [made] = first.json()["data"]
    assert {k: made[k] for k in ("target_kind", "target_id", "name", "label", "score", "annotator_kind",
                                 "identifier", "explanation", "metadata", "project")} == {
        "target_kind": "session", "target_id": sid, "name": "quality", "label": "bad", "score": 0.2,
        "annotator_kind": "HUMAN", "identifier": "alice", "explanation": "went in circles",
        "metadata": {"ticket": 7}, "project": "notes"}
    # Same (target, name, identifier): updated in place.
    second = env.client.post(path, json={"target_kind": "session", "target_id": sid, "name": "quality",
                                         "label": "good", "score": 0.9, "identifier": "alice"}).json()["data"][0]
    assert second["id"] == made["id"] and second["label"] == "good" and second["created_at"] == made["created_at"]
    # Another annotator: a second annotation; a bulk write of three (one per target kind).
    bulk = env.client.post(path, json={"data": [
        {"target_kind": "session", "target_id": sid, "name": "quality", "score": 0.5, "identifier": "bob"},
        {"target_kind": "trace", "target_id": trace_id, "name": "quality", "label": "bad", "annotator_kind": "CODE"},
        {"target_kind": "user", "target_id": "bob", "name": "vip", "label": "yes"},
    ]})
    assert bulk.status_code == 200, bulk.text
    assert [a["target_kind"] for a in bulk.json()["data"]] == ["session", "trace", "user"]
    spans = env.client.get("/v1/projects/notes/spans", params={"trace_id": trace_id}).json()["data"]
    span = env.client.post(path, json={"target_kind": "span", "target_id": spans[0]["span_id"], "name": "quality",
                                       "score": 1}).json()["data"][0]
    assert span["score"] == 1.0

    listed = env.annotations("notes", target_kind="session", target_id=sid)
    assert sorted((a["identifier"], a["score"]) for a in listed) == [("alice", 0.9), ("bob", 0.5)]
    page = env.client.get(path, params={"limit": 2}).json()
    assert len(page["data"]) == 2 and page["next_cursor"]
    rest = env.client.get(path, params={"limit": 1000, "cursor": page["next_cursor"]}).json()["data"]
    assert len(page["data"]) + len(rest) == 5

    # Summaries: the session (two annotators) and the user (own + their sessions').
    session = env.client.get(f"/v1/projects/notes/sessions/{sid.replace('/', '%2F')}").json()
    assert session["annotations"]["quality"] == {"count": 2, "mean_score": 0.7, "labels": {"good": 1}}
    turn = next(t for t in session["turns"] if t["trace_id"] == trace_id)
    assert turn["annotations"]["quality"] == {"count": 1, "mean_score": None, "labels": {"bad": 1}}
    bob = env.client.get("/v1/projects/notes/users/bob").json()
    assert bob["annotations"]["vip"]["labels"] == {"yes": 1}
    assert bob["annotations"]["quality"]["count"] == 2

    one = env.client.get(f"{path}/{made['id']}")
    assert one.status_code == 200 and one.json()["label"] == "good"
    assert env.client.delete(f"{path}/{made['id']}").status_code == 204
    assert env.client.delete(f"{path}/{made['id']}").status_code == 404
    assert env.client.get(f"{path}/{made['id']}").status_code == 404


@pytest.mark.parametrize("body, status, code", [
    ({"target_kind": "session", "target_id": "calm-1", "name": "x"}, 400, "invalid_request"),  # no label/score
    ({"target_kind": "galaxy", "target_id": "calm-1", "name": "x", "label": "a"}, 400, "invalid_request"),
    ({"target_kind": "session", "target_id": "", "name": "x", "label": "a"}, 400, "invalid_request"),
    ({"target_kind": "session", "target_id": "calm-1", "name": "", "label": "a"}, 400, "invalid_request"),
    ({"target_kind": "session", "target_id": "calm-1", "name": "x", "score": "high"}, 400, "invalid_request"),
    ({"target_kind": "session", "target_id": "calm-1", "name": "x", "label": "a", "annotator_kind": "ROBOT"},
     400, "invalid_request"),
    ({"target_kind": "session", "target_id": "calm-1", "name": "x", "label": "a", "colour": "red"},
     400, "invalid_request"),
    ({"data": []}, 400, "invalid_request"),
    ({"target_kind": "session", "target_id": "no-such-session", "name": "x", "label": "a"}, 404, "target_not_found"),
    ({"target_kind": "trace", "target_id": "0" * 32, "name": "x", "label": "a"}, 404, "target_not_found"),
])
def test_invalid_annotations_are_4xx(env: Env, body: dict[str, object], status: int, code: str) -> None:
    response = env.client.post("/v1/projects/notes/annotations", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_other_4xx(env: Env) -> None:
    c = env.client
    assert c.post("/v1/projects/nope/annotations", json={
        "target_kind": "session", "target_id": "calm-1", "name": "x", "label": "a"}).status_code == 404
    assert c.post("/v1/projects/notes/annotations", content=b"{not json",
                  headers={"content-type": "application/json"}).status_code == 400
    assert c.get("/v1/projects/notes/annotations", params={"cursor": "garbage!"}).status_code == 400
    assert c.get("/v1/projects/notes/annotations", params={"target_kind": "galaxy"}).status_code == 400
    assert c.get("/v1/projects/notes/annotations/abc").status_code == 400
    assert c.get("/v1/projects/notes/sessions/no-such/breakdown").status_code == 404
    assert c.get("/v1/projects/notes/rankings", params={"name": "x", "cursor": "bad"}).status_code == 400
    # A bulk write is all or nothing.
    before = len(env.annotations("notes"))
    bad = c.post("/v1/projects/notes/annotations", json={"data": [
        {"target_kind": "session", "target_id": "calm-1", "name": "y", "label": "a"},
        {"target_kind": "session", "target_id": "missing", "name": "y", "label": "a"}]})
    assert bad.status_code == 404 and len(env.annotations("notes")) == before


def test_python_client(env: Env) -> None:
    client = AnnotationsClient(env.server.base_url, project="notes")
    conv = env.sent["notes"][2]
    made = client.annotate("session", conv.session_id, name="resolved", label="no", score=0.0, identifier="qa")
    again = client.annotate("session", conv.session_id, name="resolved", label="yes", score=1.0, identifier="qa")
    assert again["id"] == made["id"] and again["label"] == "yes"
    many = client.annotate_many([
        {"target_kind": "trace", "target_id": t.trace_id, "name": "resolved", "score": 0.5} for t in conv.turns])
    assert len(many) == len(conv.turns)
    assert len(client.annotations(name="resolved")) == 1 + len(conv.turns)
    with pytest.raises(ThreadlineApiError) as missing:
        client.annotate("session", "no-such", name="resolved", label="x")
    assert missing.value.status == 404 and missing.value.code == "target_not_found"
    with pytest.raises(ValueError, match="label, a score or both"):
        annotation("session", "s", name="n")
    with pytest.raises(ValueError, match="finite"):
        annotation("session", "s", name="n", score=float("nan"))
    client.delete_annotation(made["id"])
    assert len(client.annotations(name="resolved")) == len(conv.turns)
    closed = client.close_session(conv.session_id)
    assert closed == {"session_id": conv.session_id, "closed": True, "already_closed": False}
    assert client.close_session(conv.session_id)["already_closed"] is True
    with pytest.raises(ThreadlineApiError):
        client.close_session("no-such")


def test_bulk_with_the_same_key_twice_keeps_the_last(env: Env) -> None:
    sid = env.sent["notes"][3].session_id
    body = {"data": [
        {"target_kind": "session", "target_id": sid, "name": "dup", "label": "first", "identifier": "x"},
        {"target_kind": "session", "target_id": sid, "name": "dup", "label": "other", "identifier": "y"},
        {"target_kind": "session", "target_id": sid, "name": "dup", "label": "last", "identifier": "x"},
    ]}
    written = env.client.post("/v1/projects/notes/annotations", json=body).json()["data"]
    assert [w["label"] for w in written] == ["last", "other", "last"]
    assert written[0]["id"] == written[2]["id"] != written[1]["id"]
    stored = env.annotations("notes", name="dup")
    assert sorted((a["identifier"], a["label"]) for a in stored) == [("x", "last"), ("y", "other")]
