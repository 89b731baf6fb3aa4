"""Annotation configs through the REST API: put, get, list, delete, validation, hostile names, and
annotations refused when they do not fit their name's config; the evaluator catalogue's directions."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from .conftest import Env

BASE = "/v1/projects/notes/annotation-configs"
TONE = {"kind": "categorical", "direction": "higher_is_better", "description": "How the reply sounds",
        "labels": [{"label": "warm", "polarity": "good", "score": 1}, {"label": "rude", "polarity": "bad", "score": 0},
                   {"label": "flat"}]}


def _url(name: str) -> str:
    return f"{BASE}/{quote(name, safe='')}"


def test_put_get_list_delete(env: Env) -> None:
    c = env.client
    put = c.put(_url("cfg_tone"), json=TONE)
    assert put.status_code == 200, put.text
    assert put.json() == {"name": "cfg_tone", "kind": "categorical", "direction": "higher_is_better",
                          "description": "How the reply sounds", "min_score": None, "max_score": None,
                          "source": "project", "labels": [
                              {"label": "warm", "polarity": "good", "score": 1.0},
                              {"label": "rude", "polarity": "bad", "score": 0.0},
                              {"label": "flat", "polarity": "neutral", "score": None}]}
    assert c.get(_url("cfg_tone")).json() == put.json()
    listed = {item["name"]: item for item in c.get(BASE).json()["data"]}
    assert listed["cfg_tone"] == put.json()
    # built-in evaluators have a default config until the project stores one
    assert listed["user_frustration"]["source"] == "evaluator"
    assert listed["user_frustration"]["direction"] == "lower_is_better"
    replaced = c.put(_url("cfg_tone"), json={"kind": "continuous", "min_score": 1, "max_score": 5})
    assert replaced.status_code == 200 and replaced.json()["kind"] == "continuous"
    assert replaced.json()["labels"] == []
    assert c.delete(_url("cfg_tone")).status_code == 204
    gone = c.get(_url("cfg_tone"))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "annotation_config_not_found"
    assert c.delete(_url("cfg_tone")).status_code == 404
    # deleting the stored config of an evaluator's name brings its default back
    assert c.put(_url("errors"), json={"kind": "freeform"}).json()["source"] == "project"
    assert c.delete(_url("errors")).status_code == 204
    assert c.get(_url("errors")).json()["source"] == "evaluator"
    assert c.delete(_url("errors")).status_code == 404  # the default itself is not stored


@pytest.mark.parametrize("body", [
    {"kind": "categorical"},  # no labels
    {"kind": "nominal", "labels": [{"label": "a"}]},
    {"kind": "categorical", "labels": [{"label": "a"}, {"label": "a"}]},
    {"kind": "categorical", "labels": [{"label": ""}]},
    {"kind": "categorical", "labels": [{"label": "a", "polarity": "great"}]},
    {"kind": "categorical", "labels": [{"label": "a\u0000"}]},
    {"kind": "continuous", "labels": [{"label": "a"}]},
    {"kind": "continuous", "min_score": 5, "max_score": 1},
    {"kind": "continuous", "direction": "up"},
    {"kind": "freeform", "colour": "red"},
    {"kind": "freeform", "description": "x" * 2001},
    [],
])
def test_bad_configs_are_400(env: Env, body: object) -> None:
    response = env.client.put(_url("cfg_bad"), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert env.client.get(_url("cfg_bad")).status_code == 404


def test_unknown_project_and_bad_bodies(env: Env) -> None:
    c = env.client
    assert c.get("/v1/projects/nope/annotation-configs").json()["error"]["code"] == "project_not_found"
    assert c.put("/v1/projects/nope/annotation-configs/x", json={"kind": "freeform"}).status_code == 404
    assert c.delete("/v1/projects/nope/annotation-configs/x").status_code == 404
    assert c.put(_url("x" * 201), json={"kind": "freeform"}).status_code == 400
    raw = c.put(_url("cfg_raw"), content=b"{not json", headers={"content-type": "application/json"})
    assert raw.status_code == 400 and "error" in raw.json()


@pytest.mark.parametrize("name", ["with/slash", "with space", "ünï ☃", "<script>alert(1)</script>", "50%", "a?b#c"])
def test_hostile_names_round_trip(env: Env, name: str) -> None:
    put = env.client.put(_url(name), json={"kind": "categorical", "labels": [{"label": name, "polarity": "bad"}]})
    assert put.status_code == 200, put.text
    assert put.json()["name"] == name and put.json()["labels"][0]["label"] == name
    assert env.client.get(_url(name)).json()["name"] == name
    assert name in {item["name"] for item in env.client.get(BASE).json()["data"]}
    assert env.client.delete(_url(name)).status_code == 204


def test_annotations_must_fit_their_config(env: Env) -> None:
    c = env.client
    conv = env.sent["notes"][2]
    path = "/v1/projects/notes/annotations"
    assert c.put(_url("cfg_mood"), json=TONE).status_code == 200
    assert c.put(_url("cfg_stars"), json={"kind": "continuous", "min_score": 1, "max_score": 5}).status_code == 200
    note = {"target_kind": "session", "target_id": conv.session_id}
    typo = c.post(path, json={**note, "name": "cfg_mood", "label": "wram"})
    assert typo.status_code == 400 and typo.json()["error"]["code"] == "annotation_config_mismatch"
    assert "wram" in typo.json()["error"]["message"] and "warm" in typo.json()["error"]["message"]
    # a batch with one bad item is refused whole
    batch = c.post(path, json={"data": [{**note, "name": "cfg_mood", "label": "warm"},
                                        {**note, "name": "cfg_stars", "score": 9}]})
    assert batch.status_code == 400 and "maximum" in batch.json()["error"]["message"]
    assert env.annotations("notes", name="cfg_mood") == []
    ok = c.post(path, json={"data": [{**note, "name": "cfg_mood", "label": "warm", "score": 1},
                                     {**note, "name": "cfg_stars", "score": 4}]})
    assert ok.status_code == 200, ok.text
    # a name without a stored config takes anything (evaluator defaults do not restrict)
    free = c.post(path, json={**note, "name": "user_frustration", "label": "not_applicable", "identifier": "cfg"})
    assert free.status_code == 200, free.text


def test_evaluator_catalogue_declares_directions_and_label_polarity(env: Env) -> None:
    catalogue = {e["name"]: e for e in env.client.get("/v1/evaluators").json()["data"]}
    assert catalogue["user_frustration"]["direction"] == "lower_is_better"
    assert catalogue["goal_completion"]["direction"] == "higher_is_better"
    assert catalogue["user_frustration"]["label_details"] == [
        {"label": "frustrated", "polarity": "bad", "score": 1.0}, {"label": "ok", "polarity": "good", "score": 0.0}]
    assert catalogue["errors"]["label_details"] == [
        {"label": "error", "polarity": "bad", "score": 1.0}, {"label": "ok", "polarity": "good", "score": 0.0}]
    for item in catalogue.values():
        polarity = {d["label"]: d["polarity"] for d in item["label_details"]}
        assert polarity[item["bad_label"]] == "bad" and polarity[item["good_label"]] == "good"


@pytest.mark.parametrize("path", ["/v1/projects/notes/eval-runs/{n}", "/v1/projects/notes/annotations/{n}"])
def test_ids_beyond_an_integer_column_are_400_not_500(env: Env, path: str) -> None:
    for n in (2**31, 2**63, 10**30, 0):
        response = env.client.get(path.format(n=n))
        assert response.status_code == 400, (n, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    assert env.client.delete(f"/v1/projects/notes/annotations/{2**64}").status_code == 400
    assert env.client.get(path.format(n=2**31 - 1)).status_code == 404
