"""The login: where credentials come from, what the start-up line says, and that every route the server has (the
page, each Gradio handler and download route) answers 401 without them; checked on the app itself, route by route."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Mount
from starlette.testclient import TestClient

from tests.conftest import run_cli
from tunesmith.errors import TunesmithError
from tunesmith.webui.app import build_app, login_line
from tunesmith.webui.context import Context
from tunesmith.webui.security import (
    Credentials,
    Gate,
    configured_credentials,
    generated_credentials,
    is_loopback,
    parse_credentials,
)
from tunesmith.webui.server import build_server_app

CREDENTIALS = Credentials("ana", "correct horse", "test")


def routes(app, prefix: str = "") -> list[tuple[str, set[str]]]:
    """(path, methods) of every route, mounted apps included."""
    found = []
    for route in app.routes:
        if isinstance(route, Mount):
            found += routes(route.app, prefix + route.path)
        elif hasattr(route, "original_router"):  # FastAPI's record of an included router (Gradio's /gradio_api)
            found += routes(route.original_router, prefix)
        elif getattr(route, "methods", None):
            found.append((prefix + route.path, set(route.methods)))
    return found


@pytest.fixture(scope="module")
def guarded_app(tmp_path_factory):
    ctx = Context(tmp_path_factory.mktemp("ws"))
    gate = Gate(CREDENTIALS, port=7860, loopback_only=False)
    return build_server_app(build_app(ctx), gate, [ctx.root], ctx.workspace.private_dirs)


def test_every_route_answers_401_without_a_login(guarded_app):
    found = routes(guarded_app)
    assert len(found) > 50 and any(path.startswith("/gradio_api/file=") for path, _ in found)
    client = TestClient(guarded_app)
    for path, methods in found:
        url = re.sub(r"\{[^}]+\}", "x", path)
        for method in methods:
            response = client.request(method, url)
            assert response.status_code == 401, (method, path, response.status_code)


def test_with_a_login_the_routes_answer(guarded_app):
    client = TestClient(guarded_app)
    assert client.get("/gradio_api/info", auth=("ana", "correct horse")).status_code == 200
    assert client.get("/gradio_api/info", auth=("ana", "wrong")).status_code == 401
    assert client.get("/gradio_api/info", headers={"Authorization": "Basic !!notbase64"}).status_code == 401
    login = client.post("/ts/login", data={"username": "ana", "password": "correct horse"}, follow_redirects=False)
    assert login.status_code == 303
    assert client.get("/gradio_api/info").status_code == 200  # the session cookie the login set
    client.get("/ts/logout", follow_redirects=False)
    assert client.get("/gradio_api/info").status_code == 401


def test_credentials_come_from_the_environment_or_a_file(tmp_path):
    assert configured_credentials(None, {}) is None
    from_variable = configured_credentials(None, {"TUNESMITH_WEBUI_AUTH": "ana:pa:ss"})
    assert (from_variable.user, from_variable.password) == ("ana", "pa:ss")  # the password may hold ':'
    file = tmp_path / "login"
    file.write_text("bo:secret\n")
    from_file = configured_credentials(str(file), {"TUNESMITH_WEBUI_AUTH": "ana:x"})  # the flag comes first
    assert (from_file.user, from_file.password) == ("bo", "secret")
    from_env_file = configured_credentials(None, {"TUNESMITH_WEBUI_AUTH_FILE": str(file)})
    assert from_env_file.user == "bo" and "TUNESMITH_WEBUI_AUTH_FILE" in from_env_file.origin
    for bad in ("no-colon-secret", ":secret", "ana:"):
        with pytest.raises(TunesmithError, match="must hold user:password") as refused:
            parse_credentials(bad, "TUNESMITH_WEBUI_AUTH")
        assert "secret" not in str(refused.value)
    with pytest.raises(TunesmithError, match="cannot read the credentials file"):
        configured_credentials(str(tmp_path / "missing"), {})
    assert "correct horse" not in repr(CREDENTIALS)


def test_a_generated_password_is_new_each_start():
    first, second = generated_credentials(), generated_credentials()
    assert first.user == "tunesmith" and first.password != second.password and len(first.password) >= 20


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.1.2.3", True), ("0.0.0.0", False), ("192.0.2.2", False),
                                            ("::", False), ("lab-box", False)])
def test_loopback_means_this_machine_only(host, loopback):
    assert is_loopback(host) is loopback


def test_the_start_up_line_says_how_to_log_in():
    generated = generated_credentials()
    line = login_line("0.0.0.0", 7860, generated)
    assert line.startswith("warning: ") and "\n" not in line and "0.0.0.0:7860" in line
    assert f"user 'tunesmith' with password '{generated.password}'" in line
    configured = parse_credentials("ana:secret", "TUNESMITH_WEBUI_AUTH")
    line = login_line("0.0.0.0", 7860, configured)
    assert "TUNESMITH_WEBUI_AUTH" in line and "secret" not in line
    assert login_line("127.0.0.1", 7860, None) is None  # open on loopback: nothing to say


def test_bad_login_settings_stop_the_cli_in_one_line(tmp_path):
    missing = run_cli("webui", "--auth-file", str(tmp_path / "missing"), "--workspace", str(tmp_path / "ws"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "cannot read the credentials file" in missing.stderr
    malformed = run_cli("webui", "--workspace", str(tmp_path / "ws"), env={"TUNESMITH_WEBUI_AUTH": "only-a-secret"})
    assert malformed.returncode == 2 and malformed.stderr.count("\n") == 1
    assert "TUNESMITH_WEBUI_AUTH must hold user:password" in malformed.stderr
    assert "only-a-secret" not in malformed.stderr
    assert not (tmp_path / "ws").exists()  # stopped before anything was created
