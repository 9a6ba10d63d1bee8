"""Hub ids without a network: the local hub cache at once, or one line; never a minute of retries."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import QA, run_cli, write_jsonl
from tunesmith import offline


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once the socket closes: connecting to it is refused


@pytest.fixture
def listening_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty hub cache in tmp_path and a fresh reachability answer; returns the cache folder."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for variable in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(offline, "_last_probe", None)  # no remembered answer in, none out
    yield tmp_path / "hub"


def cache_snapshot(hub_cache: Path, repo_id: str, files: Path | dict, repo_type: str = "model") -> Path:
    """Lay out `repo_id` in a hub cache as huggingface_hub leaves it after a download: refs/main -> snapshot."""
    repo = hub_cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123abcd"
    if isinstance(files, Path):
        shutil.copytree(files, snapshot)
    else:
        for name, text in files.items():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / name).write_text(text)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    return snapshot


def test_the_hub_is_reachable_when_its_endpoint_accepts_a_connection(monkeypatch, hub, listening_port):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{listening_port}")
    assert offline.hub_reachable()


def test_the_hub_is_unreachable_when_its_endpoint_refuses(monkeypatch, hub):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert not offline.hub_reachable()


def test_the_answer_is_kept_for_a_while_then_asked_again(monkeypatch, hub):
    answers = iter([False, True])
    monkeypatch.setattr(offline, "_connects", lambda: next(answers))
    clock = iter([1000.0, 1010.0, 1000.0 + offline.RECHECK_SECONDS + 1])
    monkeypatch.setattr(offline, "time", SimpleNamespace(monotonic=lambda: next(clock)))  # offline's clock only
    assert [offline.hub_reachable() for _ in range(3)] == [False, False, True]  # a network that came up is seen


def test_behind_a_proxy_the_proxy_is_what_must_answer(monkeypatch, hub, listening_port):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"https://127.0.0.1:{closed_port()}")  # direct: refused
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{listening_port}")
    monkeypatch.setenv("no_proxy", "")
    assert offline.hub_reachable()


def test_offline_a_cached_model_is_its_snapshot_folder_and_an_uncached_one_none(monkeypatch, hub):
    monkeypatch.setattr(offline, "hub_reachable", lambda: False)
    snapshot = cache_snapshot(hub, "acme/tiny", {"config.json": "{}"})
    assert Path(offline.cached_if_offline("acme/tiny")) == snapshot
    assert offline.cached_if_offline("acme/never-downloaded") is None
    assert offline.cached_if_offline("acme/tiny", "dataset") is None  # a model is not a dataset


def test_with_a_network_or_in_the_hubs_own_offline_mode_ids_pass_unchanged(monkeypatch, hub):
    from huggingface_hub import constants

    monkeypatch.setattr(offline, "hub_reachable", lambda: True)
    assert offline.cached_if_offline("acme/tiny") == "acme/tiny"
    monkeypatch.setattr(offline, "hub_reachable", lambda: pytest.fail("HF_HUB_OFFLINE needs no probe"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert offline.cached_if_offline("acme/tiny") == "acme/tiny"


def test_a_model_id_not_cached_while_offline_is_one_line_with_the_ways_out(monkeypatch, hub):
    from tunesmith.errors import ModelError
    from tunesmith.model.loader import resolve_model

    monkeypatch.setattr(offline, "hub_reachable", lambda: False)
    with pytest.raises(ModelError) as err:
        resolve_model("default")  # what a new user types for the embedded model
    assert str(err.value) == (
        "default: not a local folder or .gguf file, not in the local hub cache, and the hub cannot be reached; "
        "download it once with network access, or use a local folder; the embedded SmolLM2-135M-Instruct needs no "
        "download (model= empty; `base` in chat, serve and eval)")


def test_the_cli_offline_trains_from_cached_hub_ids_and_refuses_others_in_one_line(tmp_path, tiny_model_dir):
    """The real CLI, in a process whose hub endpoint refuses connections: a cached model and a cached dataset load
    from the cache; an id never downloaded is one line on stderr (before this, a minute of retries and warnings)."""
    cache = tmp_path / "hub"
    cache_snapshot(cache, "acme/tiny-llama", tiny_model_dir)
    rows = "".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in QA)
    cache_snapshot(cache, "acme/faq", {"data/train.jsonl": rows}, "dataset")
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0",
           "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    ok = run_cli("doctor", "model=acme/tiny-llama", "dataset=acme/faq", env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "all 6 answers" in ok.stdout and "fine to train" in ok.stdout
    assert all(line.startswith("tunesmith: ") for line in ok.stderr.splitlines()), ok.stderr  # no library noise
    faq = write_jsonl(tmp_path / "faq.jsonl", [{"instruction": q, "output": a} for q, a in QA])
    missing = run_cli("doctor", "model=acme/never-downloaded", f"dataset={faq}", env=env, timeout=300)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [(
        "error: acme/never-downloaded: not a local folder or .gguf file, not in the local hub cache, and the hub "
        "cannot be reached; download it once with network access, or use a local folder; the embedded "
        "SmolLM2-135M-Instruct needs no download (model= empty; `base` in chat, serve and eval)")]
    no_data = run_cli("doctor", "model=acme/tiny-llama", "dataset=acme/no-such-rows", env=env, timeout=300)
    assert no_data.returncode == 2 and len(no_data.stderr.splitlines()) == 1
    assert "acme/no-such-rows: no such file or folder, not in the local hub cache" in no_data.stderr
