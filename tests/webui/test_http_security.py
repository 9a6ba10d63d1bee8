"""Raw HTTP against a running `tunesmith webui`: bound to the network it answers nothing without a login (the page,
every /gradio_api route, file downloads); logged in, the handlers refuse paths outside the workspace; and bound to
loopback, no other origin (another localhost app) and no other Host name may drive it."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.conftest import QA, network_address, write_jsonl
from tests.webui.webui_server import running_webui
from tunesmith.webui.train_form import WIDGET_FIELDS

pytestmark = pytest.mark.slow
FORM = ["model_source", "model_location", *WIDGET_FIELDS]
# The inputs of each handler the tests call, in order (gr.State inputs are not part of the API).
INPUTS = {"save_config": ["lang", "path", *FORM], "load_config": ["lang", "path"],
          "preview_data": ["lang", "count", *FORM], "check_config": ["lang", *FORM], "start_training": ["lang", *FORM],
          "start_export": ["lang", "run_dir", "kind", "quant", "shard", "out", "repo", "public"],
          "start_eval": ["lang", "models", "benchmarks", "dataset", "max_samples", "few_shot", "name"],
          "start_ab": ["lang", "model_1", "model_2", "typed", "prompt_file", "limit"], "upload_data": ["lang", "file"]}
OUTSIDE = "outside the workspace"


@pytest.fixture(scope="module")
def network_ui(tmp_path_factory):
    """Bound to 0.0.0.0 (a login is required), with files the tests try to download or reach around it."""
    folder = tmp_path_factory.mktemp("network-ui")
    report = folder / "ws" / "eval" / "first" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<p>the report</p>")
    (folder / "ws" / ".webui" / "data").mkdir(parents=True)
    write_jsonl(folder / "ws" / ".webui" / "data" / "uploaded.jsonl", [{"instruction": "q", "output": "secret"}])
    write_jsonl(folder / "outside.jsonl", [{"instruction": q, "output": a} for q, a in QA])
    (folder / "outside.yaml").write_text(f"dataset: {folder / 'outside.jsonl'}\n")
    (folder / "outside-run").mkdir()
    (folder / "outside-run" / "trainer_log.jsonl").write_text('{"done": true}\n')
    with running_webui(folder, host="0.0.0.0", connect_to=network_address() or "127.0.0.1") as ui:
        yield ui, folder, report


@pytest.fixture(scope="module")
def logged_in(network_ui):
    ui, _, _ = network_ui
    with httpx.Client(base_url=ui.url, auth=ui.login, timeout=120) as client:
        yield client


def call(client: httpx.Client, api: str, **values) -> tuple[str, str]:
    """Call handler `api` with its current defaults (from /gradio_api/info) changed by `values`: (event, payload)."""
    params = client.get("gradio_api/info").json()["named_endpoints"][f"/{api}"]["parameters"]
    names = INPUTS[api]
    assert len(params) == len(names), f"{api}: the handler's inputs changed"
    data = [values.get(name, param.get("parameter_default")) for name, param in zip(names, params)]
    started = client.post(f"gradio_api/call/{api}", json={"data": data})
    started.raise_for_status()
    stream = client.get(f"gradio_api/call/{api}/{started.json()['event_id']}").text
    event, payload = re.findall(r"event: (\w+)\ndata: (.*)", stream)[-1]
    return event, json.dumps(json.loads(payload), ensure_ascii=False) if payload != "null" else ""


def test_without_a_login_nothing_answers(network_ui):
    ui, folder, report = network_ui
    anonymous = httpx.Client(base_url=ui.url, timeout=30)
    page = anonymous.get("", headers={"Accept": "text/html"})
    assert page.status_code == 401 and 'id="ts-login"' in page.text and "ts-start" not in page.text
    for path in ("config", "gradio_api/info", "gradio_api/config", "gradio_api/openapi.json", "theme.css",
                 f"gradio_api/file={report}", f"gradio_api/file={folder}/ws/.webui/data/uploaded.jsonl",
                 "gradio_api/upload_progress", "gradio_api/run-history/records", "gradio_api/app_id",
                 "gradio_api/queue/data?session_hash=x", "gradio_api/heartbeat/x", "gradio_api/user"):
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert "the report" not in response.text and "secret" not in response.text
    for path in ("gradio_api/call/save_config", "gradio_api/queue/join", "gradio_api/upload", "gradio_api/run/x",
                 "login"):
        assert anonymous.post(path, json={"data": []}).status_code == 401, path
    wrong = httpx.get(f"{ui.url}gradio_api/info", auth=(ui.login[0], "wrong"))
    assert wrong.status_code == 401


def test_a_login_opens_the_page_and_downloads_from_the_workspace_only(network_ui, logged_in):
    ui, folder, report = network_ui
    user, password = ui.login
    browser = httpx.Client(base_url=ui.url, timeout=30)
    assert browser.post("ts/login", data={"username": user, "password": "nope"}).status_code == 401
    login = browser.post("ts/login", data={"username": user, "password": password})
    assert login.status_code == 303 and "HttpOnly" in login.headers["set-cookie"]
    assert browser.get("gradio_api/info").status_code == 200  # the session cookie
    assert browser.get("", headers={"Accept": "text/html"}).status_code == 200  # the page itself, not the form
    assert logged_in.get(f"gradio_api/file={report}").text == "<p>the report</p>"
    for private in (f"{folder}/ws/.webui/data/uploaded.jsonl", f"{folder}/outside.jsonl", "/etc/passwd"):
        assert logged_in.get(f"gradio_api/file={private}").status_code == 403, private


def test_config_files_stay_in_the_workspace(network_ui, logged_in):
    _, folder, _ = network_ui
    for path in (str(folder / "escaped.yaml"), "../escaped.yaml", "~/escaped.yaml"):
        event, shown = call(logged_in, "save_config", path=path)
        assert event == "complete" and ("outside" in shown or "home folder" in shown), shown
    assert not (folder / "escaped.yaml").exists()
    event, shown = call(logged_in, "load_config", path=str(folder / "outside.yaml"))
    assert OUTSIDE in shown and "outside.jsonl" not in shown  # refused before its content was read
    event, shown = call(logged_in, "save_config", path="mine/quick.yaml")
    assert "Saved" in shown and (folder / "ws" / "mine" / "quick.yaml").is_file()


def test_data_preview_and_training_stay_in_the_workspace(network_ui, logged_in):
    _, folder, _ = network_ui
    for dataset in ("/etc/passwd", str(folder / "outside.jsonl"), "../outside.jsonl", "../../outside.jsonl"):
        event, shown = call(logged_in, "preview_data", dataset=dataset)
        assert OUTSIDE in shown and "Support is open" not in shown, dataset
    event, shown = call(logged_in, "start_training", output_dir=str(folder / "outside-run"),
                        overwrite_output_dir=True)
    assert OUTSIDE in shown
    event, shown = call(logged_in, "start_training", resume=str(folder / "outside-run"))
    assert OUTSIDE in shown
    assert (folder / "outside-run" / "trainer_log.jsonl").exists()  # nothing cleared out there
    event, shown = call(logged_in, "preview_data", count=1)  # the example data copied into the workspace
    assert event == "complete" and "ts-answer" in shown


def test_the_check_button_shows_the_doctor_report_for_data_in_the_workspace_only(network_ui, logged_in):
    _, folder, _ = network_ui
    event, shown = call(logged_in, "check_config", dataset=str(folder / "outside.jsonl"))
    assert OUTSIDE in shown and "Support is open" not in shown
    event, shown = call(logged_in, "check_config")  # the quickstart, as `tunesmith doctor` reports it
    assert event == "complete" and "ts-doctor" in shown and "fine to train" in shown, shown[-500:]


def test_exports_evaluations_and_uploads_stay_in_the_workspace(network_ui, logged_in):
    _, folder, _ = network_ui
    for out in ("../../escaped-export", str(folder / "escaped-export")):
        event, shown = call(logged_in, "start_export", run_dir=str(folder / "outside-run"), out=out)
        assert "must be a name inside" in shown or OUTSIDE in shown, shown
    for values in ({"name": "../../escaped-eval"}, {"name": str(folder / "escaped-eval")},
                   {"name": "ok", "dataset": str(folder / "outside.jsonl")},
                   {"name": "ok", "benchmarks": [str(folder / "outside.jsonl")]}):
        event, shown = call(logged_in, "start_eval", models=["base"], **values)
        assert "must be a name inside" in shown or OUTSIDE in shown, (values, shown)
    assert not any(folder.glob("escaped-*"))
    event, shown = call(logged_in, "start_ab", model_1="base", model_2="base",
                        prompt_file=str(folder / "outside.jsonl"))
    assert OUTSIDE in shown and "support hours" not in shown
    event, shown = call(logged_in, "upload_data", file={"path": str(folder / "outside.jsonl"),
                                                        "meta": {"_type": "gradio.FileData"}})
    assert event == "error" or "error" in shown
    assert not (folder / "ws" / ".webui" / "data" / "outside.jsonl").exists()


@pytest.fixture(scope="module")
def loopback_ui(tmp_path_factory):
    with running_webui(tmp_path_factory.mktemp("loopback-ui")) as ui:
        yield ui


def test_on_loopback_the_page_is_open_to_its_own_origin_only(loopback_ui):
    url = loopback_ui.url
    own = url.rstrip("/")
    assert httpx.get(f"{url}gradio_api/info").status_code == 200  # no login on loopback
    assert "log in" not in loopback_ui.output()
    assert httpx.get(f"{url}gradio_api/info", headers={"Origin": own}).status_code == 200
    assert httpx.get(url).headers["x-frame-options"] == "DENY"  # no other site shows the page in a frame
    port = int(own.rsplit(":", 1)[1])
    for foreign in (f"http://localhost:{port + 1}", f"http://127.0.0.1:{port + 1}", "http://evil.example", "null"):
        response = httpx.get(f"{url}gradio_api/info", headers={"Origin": foreign})
        assert response.status_code == 403 and "access-control-allow-origin" not in response.headers, foreign
        preflight = httpx.options(f"{url}gradio_api/queue/join", headers={
            "Origin": foreign, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers, foreign
        posted = httpx.post(f"{url}gradio_api/call/save_config", json={"data": []}, headers={"Origin": foreign})
        assert posted.status_code == 403, foreign
    rebound = httpx.get(f"{url}gradio_api/info", headers={"Host": f"evil.example:{port}"})  # DNS rebinding
    assert rebound.status_code == 403
