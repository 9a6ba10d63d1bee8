"""End to end in a real browser: `tunesmith webui` in a subprocess, driven by Playwright in Debian's headless
Chromium. On loopback the page opens ready (the embedded model, the example data, the quickstart's settings and what
Start will do), Start trains it (shortened to 2 steps), the loss chart fills, and the result answers in Chat. Bound to
the network, the page asks for a login first; with it, a training starts. Screenshots go to tests/artifacts/webui/.

Needs `/usr/bin/chromium` (Debian: `apt-get install -y chromium`); Playwright's own browser download is not used.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import QA, ROOT, network_address, write_jsonl
from tests.webui.webui_server import running_webui
from tunesmith.config import load_config
from tunesmith.webui.form import parse_command

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts" / "webui"
TIMEOUT_MS = 30_000  # the first preview loads a tokenizer; a busy 2-core box takes a while
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifacts():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            locale="en-US", viewport={"width": 1300, "height": 1400})
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


def set_number(page, name: str, value) -> None:
    box = page.locator(f"#ts-field-{name} input")
    box.fill(str(value))
    box.press("Tab")


def test_loopback_opens_ready_and_start_trains_the_quickstart(browser, artifacts, tmp_path):
    from playwright.sync_api import expect

    with running_webui(tmp_path) as ui:
        ws = ui.workspace
        quickstart = load_config(ws / "examples" / "quickstart.yaml")
        data = ws / "examples" / "data" / "haneul_faq.jsonl"
        page = browser.new_page()

        def shot(name: str) -> None:
            page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

        page.goto(ui.url)
        output_dir = page.locator("#ts-field-output_dir textarea")  # each page load gets a fresh run folder
        expect(output_dir).to_have_value(re.compile(re.escape(str(ws)) + r"/run-\d{8}-\d{6}$"))
        # Ready: the embedded model, the example data copied into the workspace, the quickstart's settings.
        expect(page.get_by_label("Embedded SmolLM2-135M")).to_be_checked()
        expect(page.locator("#ts-field-dataset input")).to_have_value(str(data))
        shown = {name: float(page.locator(f"#ts-field-{name} input").input_value())
                 for name in ("learning_rate", "num_epochs", "per_device_batch_size", "gradient_accumulation_steps",
                              "cutoff_len", "val_size", "eval_steps", "save_steps", "lora_rank", "lora_alpha")}
        assert shown == {name: float(getattr(quickstart, name)) for name in shown}
        plan = page.locator("#ts-plan")
        expect(plan).to_contain_text("train on 279 rows (31 held out for evaluation)")
        expect(plan).to_contain_text("105 steps of 8 rows (3 epochs)")
        expect(plan).to_contain_text(re.compile(r"estimated time: about \d+ min \(a rough estimate"))
        start = page.locator("#ts-start")
        expect(start).to_have_text("Start training")
        shot("01-ready-to-start")

        page.get_by_label("한국어").check()
        expect(start).to_have_text("학습 시작")
        expect(plan).to_contain_text("예상 시간")
        shot("02-train-korean")
        page.get_by_label("English").check()
        expect(start).to_have_text("Start training")

        first_answer = json.loads(data.read_text(encoding="utf-8").splitlines()[0])["output"]
        page.locator("#ts-preview-data").click()
        expect(page.locator("#ts-data-preview pre mark.ts-answer").first).to_contain_text(first_answer[:30])

        set_number(page, "max_steps", 2)  # the quickstart, shortened for the test
        expect(plan).to_contain_text("2 steps of 8 rows")
        run_dir = output_dir.input_value()
        page.locator("#ts-preview-command").click()
        command = page.locator("#ts-command textarea")
        expect(command).to_have_value(f"tunesmith train {ws}/examples/quickstart.yaml dataset={data} "
                                      f"output_dir={run_dir} max_steps=2")
        cfg = load_config(*parse_command(command.input_value()))
        changed = {k for k, v in cfg.to_dict().items() if v != quickstart.to_dict()[k]}
        assert changed == {"dataset", "output_dir", "max_steps"}
        shot("03-command-and-data-preview")

        start.click()
        points = page.locator('#ts-loss-chart [aria-roledescription="point"]')
        expect(page.locator("#ts-train-status")).to_contain_text("Training finished", timeout=240_000)
        expect(points).to_have_count(4)  # train loss at steps 1 and 2, eval loss at the start and the end
        expect(page.locator('#ts-loss-chart [aria-roledescription="line mark"]').first).to_have_attribute(
            "stroke", re.compile("#"))  # drawn in a colour, not an invisible line
        expect(page.locator("#ts-progress")).to_contain_text("step 2/2")
        shot("04-trained")
        assert (Path(run_dir) / "adapter_model.safetensors").exists()

        page.get_by_role("tab", name="Chat").click()
        model = page.locator("#ts-chat-model input")
        model.fill(run_dir)
        model.press("Enter")
        page.locator("#ts-chat-load").click()
        expect(page.locator("#ts-chat-status")).to_contain_text(f"Loaded {Path(run_dir).name}", timeout=60_000)
        page.locator("#ts-chat-message textarea").fill("What are the support hours?")
        page.locator("#ts-chat-send").click()
        expect(page.locator('#ts-chatbot [data-testid="user"]')).to_contain_text("What are the support hours?")
        expect(page.locator('#ts-chatbot [data-testid="bot"]')).to_have_text(re.compile(r"\S"), timeout=90_000)
        shot("05-chat")

        page.get_by_role("tab", name="Runs").click()
        runs = page.locator("#ts-runs-table")
        expect(runs).to_contain_text(run_dir)
        expect(runs).to_contain_text("finished")
        shot("06-runs")

        korean = browser.new_page()  # a browser that prefers Korean gets the Korean page
        korean.set_extra_http_headers({"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"})
        korean.goto(ui.url)
        expect(korean.locator("#ts-start")).to_have_text("학습 시작")
        korean.screenshot(path=str(artifacts / "07-korean-browser.png"), full_page=True)


def test_on_the_network_the_page_demands_a_login_then_trains(browser, artifacts, tmp_path, tiny_model_dir):
    from playwright.sync_api import expect

    (tmp_path / "ws").mkdir()
    data = write_jsonl(tmp_path / "ws" / "my-data.jsonl", [{"instruction": q, "output": a} for q, a in QA * 2])
    with running_webui(tmp_path, host="0.0.0.0", connect_to=network_address() or "127.0.0.1") as ui:
        ws = ui.workspace
        user, password = ui.login
        page = browser.new_page()
        response = page.goto(ui.url)
        assert response.status == 401
        expect(page.locator("#ts-login")).to_be_visible()
        assert page.locator("#ts-start").count() == 0  # nothing of the page before the login
        page.screenshot(path=str(artifacts / "08-login.png"), full_page=True)
        page.locator("#ts-user").fill(user)
        page.locator("#ts-password").fill("not the password")
        page.locator("#ts-login-submit").click()
        expect(page.locator("#ts-login-error")).to_have_text("Wrong user or password.")
        page.locator("#ts-user").fill(user)
        page.locator("#ts-password").fill(password)
        page.locator("#ts-login-submit").click()
        start = page.locator("#ts-start")
        expect(start).to_have_text("Start training")
        # the page-load event gives the form a fresh run folder: wait for it before typing
        expect(page.locator("#ts-field-output_dir textarea")).to_have_value(re.compile(r"run-\d{8}-\d{6}$"))

        page.get_by_label("Local folder or .gguf").check()
        page.locator("#ts-field-model textarea").fill(str(tiny_model_dir))
        dataset = page.locator("#ts-field-dataset input")
        dataset.fill("my-data.jsonl")  # relative names start in the workspace
        dataset.press("Enter")
        page.locator("#ts-field-output_dir textarea").fill("tiny-run")
        for name, value in (("max_steps", 3), ("gradient_accumulation_steps", 1), ("cutoff_len", 128)):
            set_number(page, name, value)
        expect(page.locator("#ts-plan")).to_contain_text("3 steps of 4 rows")
        page.locator("#ts-preview-command").click()
        expect(page.locator("#ts-command textarea")).to_have_value(
            f"tunesmith train {ws}/examples/quickstart.yaml model={tiny_model_dir} dataset={data} "
            f"output_dir={ws}/tiny-run max_steps=3 gradient_accumulation_steps=1 cutoff_len=128")
        start.click()
        expect(page.locator("#ts-train-status")).to_contain_text("Training finished", timeout=120_000)
        expect(page.locator("#ts-progress")).to_contain_text("step 3/3")
        page.screenshot(path=str(artifacts / "09-trained-after-login.png"), full_page=True)
        assert (ws / "tiny-run" / "adapter_model.safetensors").exists()
