"""End to end in a real browser: `tunesmith webui` in a subprocess, driven by Playwright in Debian's headless
Chromium. Switch the language, fill in a tiny-model run, preview its command, train it, watch the loss chart fill,
and chat with the result. Screenshots go to tests/artifacts/webui/.

Needs `/usr/bin/chromium` (Debian: `apt-get install -y chromium`); Playwright's own browser download is not used.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import QA, ROOT, write_jsonl
from tunesmith.config import load_config
from tunesmith.webui.form import parse_command

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts" / "webui"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webui(tmp_path):
    """`tunesmith webui` on a free port; yields (url, output root)."""
    port, root = free_port(), tmp_path / "runs"
    log = (tmp_path / "webui.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "tunesmith", "webui", "--port", str(port), "--output-root",
                               str(root)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail("tunesmith webui did not start:\n" + (tmp_path / "webui.log").read_text())
            time.sleep(0.3)
    yield url, root
    server.send_signal(signal.SIGINT)
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture
def browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            locale="en-US", viewport={"width": 1300, "height": 1400})
        yield context
        context.close()


def test_train_then_chat_in_the_browser(webui, browser, tiny_model_dir, tmp_path):
    from playwright.sync_api import expect

    url, root = webui
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    data = write_jsonl(tmp_path / "faq.jsonl", [{"instruction": q, "output": a} for q, a in QA * 2])
    run_dir = root / "e2e"
    page = browser.new_page()
    page.set_default_timeout(30_000)
    expect.set_options(timeout=30_000)  # the first preview loads a tokenizer; a busy 2-core box takes a while

    def shot(name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    page.goto(url)
    # the page-load event gives the form a fresh run folder: wait for it before typing
    expect(page.locator("#ts-field-output_dir textarea")).to_have_value(re.compile(r"run-\d{8}-\d{6}$"))
    start = page.locator("#ts-start")
    expect(start).to_have_text("Start training")
    shot("01-train-english")

    page.get_by_label("한국어").check()
    expect(start).to_have_text("학습 시작")
    expect(page.get_by_role("tab", name="대화")).to_be_visible()
    shot("02-train-korean")
    page.get_by_label("English").check()
    expect(start).to_have_text("Start training")

    page.get_by_label("Local folder or .gguf").check()
    page.locator("#ts-field-model textarea").fill(str(tiny_model_dir))
    dataset = page.locator("#ts-field-dataset input")
    dataset.fill(str(data))
    dataset.press("Enter")
    page.locator("#ts-field-output_dir textarea").fill(str(run_dir))
    for name, value in (("max_steps", 3), ("gradient_accumulation_steps", 1), ("cutoff_len", 128)):
        box = page.locator(f"#ts-field-{name} input")
        box.fill(str(value))
        box.press("Tab")

    page.locator("#ts-preview-data").click()
    expect(page.locator("#ts-data-preview pre mark.ts-answer").first).to_contain_text(QA[0][1])

    page.locator("#ts-preview-command").click()
    command = page.locator("#ts-command textarea")
    expected = (f"tunesmith train model={tiny_model_dir} dataset={data} output_dir={run_dir} max_steps=3 "
                "gradient_accumulation_steps=1 cutoff_len=128")
    expect(command).to_have_value(expected)
    cfg = load_config(*parse_command(command.input_value()))
    assert (cfg.model, cfg.dataset, cfg.max_steps, cfg.output_dir) == (str(tiny_model_dir), str(data), 3,
                                                                      str(run_dir))
    shot("03-command-and-data-preview")

    start.click()
    points = page.locator('#ts-loss-chart [aria-roledescription="point"]')
    expect(points.first).to_be_attached(timeout=90_000)
    expect(page.locator("#ts-train-status")).to_contain_text("Training finished", timeout=90_000)
    expect(points).to_have_count(3)
    expect(page.locator('#ts-loss-chart [aria-roledescription="line mark"]').first).to_have_attribute(
        "stroke", re.compile("#"))  # drawn in a colour, not an invisible line
    expect(page.locator("#ts-progress")).to_contain_text("step 3/3")
    shot("04-trained")
    assert (run_dir / "adapter_model.safetensors").exists()

    page.get_by_role("tab", name="Chat").click()
    model = page.locator("#ts-chat-model input")
    model.fill(str(run_dir))
    model.press("Enter")
    page.locator("#ts-chat-load").click()
    expect(page.locator("#ts-chat-status")).to_contain_text("Loaded e2e", timeout=60_000)
    page.locator("#ts-chat-message textarea").fill("What are the support hours?")
    page.locator("#ts-chat-send").click()
    expect(page.locator('#ts-chatbot [data-testid="user"]')).to_contain_text("What are the support hours?")
    answer = page.locator('#ts-chatbot [data-testid="bot"]')
    expect(answer).to_have_text(re.compile(r"\S"), timeout=60_000)
    shot("05-chat")

    page.get_by_role("tab", name="Runs").click()
    runs = page.locator("#ts-runs-table")
    expect(runs).to_contain_text(str(run_dir))
    expect(runs).to_contain_text("finished")
    shot("06-runs")

    korean = browser.new_page()  # a browser that prefers Korean gets the Korean page
    korean.set_extra_http_headers({"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"})
    korean.goto(url)
    expect(korean.locator("#ts-start")).to_have_text("학습 시작")
    korean.screenshot(path=str(ARTIFACTS / "07-korean-browser.png"), full_page=True)
    print(f"screenshots: {ARTIFACTS}")
