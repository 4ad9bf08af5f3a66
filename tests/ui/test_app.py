"""The page in a real browser (Debian's chromium, driven by Playwright with that binary; nothing
downloads a browser): the data check and the coloured example, a tiny training run with its
progress bar and loss chart, stop and resume, the run opened and one chat turn, Chinese.
Screenshots of every tab in both languages go to test-results/ui/."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import IN_CI, ROOT
from thinktune import checkpoints

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "test-results" / "ui"

if CHROMIUM is None or not __import__("importlib").util.find_spec("playwright"):
    reason = "the browser tests need Debian's chromium (apt-get install chromium) and playwright (make setup installs it)"
    if IN_CI:
        pytest.fail(f"CI=true but {reason}; .ci/run installs chromium first.", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_qwen2_dir, short_sample):
    """`thinktune ui` as a user starts it, on a config of a tiny model and the short sample."""
    work = tmp_path_factory.mktemp("workspace")
    config = work / "tiny.yaml"
    config.write_text(
        "\n".join(
            [
                "model:",
                f"  name: {tiny_qwen2_dir}",
                "  precision: fp32",
                "data:",
                f"  path: {short_sample}",
                "  limit: null",
                "  max_length: 192",
                "  overflow: truncate",
                "lora:",
                "  dropout: 0",
                "train:",
                "  output_dir: runs/tiny",
                "  batch_size: 1",
                "  grad_accum: 1",
                "  epochs: 2",
                "  lr: 0.01",
                "  logging_steps: 5",
                "  eval_steps: 100",
                "  save_steps: 50",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinktune", "ui", "--port", str(port), "--workspace", str(work), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"thinktune ui did not start: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.5)
    yield url, work, config
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(60_000)
    yield pg
    pg.close()


def tab(pg, name: str) -> None:
    pg.get_by_role("tab", name=name, exact=True).click()


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_data_check_shows_the_report_and_every_token_coloured_as_the_pipeline_labels_it(page, server, tiny_qwen2_dir, short_sample):
    from thinktune import config as config_mod
    from thinktune.data import prepare
    from thinktune.data.show import token_kinds
    from thinktune.model import load_tokenizer, resolve

    url, work, config = server
    page.goto(url + "/")
    tab(page, "Data")
    page.locator("#tt-check").click()
    page.locator("#tt-example").wait_for()
    report = page.locator("#tt-report").inner_text()
    assert "Data: 150 rows read" in report and "max_length 192" in report
    # The legend's counts are the labels the pipeline made for training example 1.
    cfg = config_mod.load(config)
    tok = load_tokenizer(resolve(str(tiny_qwen2_dir)))
    prepared = prepare(cfg.data, tok, cfg.train.seed)
    ex = prepared.train[0]
    longer = [len(e["input_ids"]) for e in prepared.train if len(e["input_ids"]) > len(ex["input_ids"])]
    kinds = token_kinds(ex, tok.pad_token_id, tok.eos_token_id, min(longer) if longer else None)
    legend = page.locator(".tt-legend").inner_text()
    for kind in ("prompt", "thinking", "answer", "end", "pad"):
        n = sum(k == kind for _, k, _ in kinds)
        assert f": {n}" in page.locator(f".tt-legend .tt-{kind}").inner_text(), (kind, n, legend)
    trained = sum(t for _, _, t in kinds)

    assert page.locator(".tt-tokens .tt-trained").count() > 0 and page.locator(".tt-tokens .tt-prompt.tt-untrained").count() > 0
    assert page.locator(".tt-tokens .tt-trained").count() <= trained and page.locator(".tt-tokens .tt-prompt.tt-trained").count() == 0
    assert page.locator(".tt-tokens .tt-end").count() == (1 if any(k == "end" for _, k, _ in kinds) else 0)
    shot(page, "en-1-data")
    tab(page, "Plan and settings")
    page.locator("#tt-show-yaml").click()
    page.wait_for_function("document.querySelector('#tt-command textarea').value.includes('thinktune train --config configs/tiny.yaml')")
    shot(page, "en-2-settings")


def test_a_bad_setting_is_the_clis_message_in_the_page(page, server):
    url, _, _ = server
    page.goto(url + "/")
    tab(page, "Plan and settings")
    page.get_by_text("lora: the adapter").click()  # its section starts folded
    box = page.locator("#tt-lora-r textarea, #tt-lora-r input").first
    box.fill("0")
    page.locator("#tt-show-yaml").click()
    page.locator(".tt-error").wait_for()
    assert "'lora.r' must be at least 1, got 0." in page.locator(".tt-error").inner_text()


def test_train_shows_progress_and_loss_then_stops_resumes_and_finishes(page, server):
    url, work, _ = server
    page.goto(url + "/")
    tab(page, "Train")
    page.locator("#tt-start").click()
    status = page.locator("#tt-status")
    page.wait_for_function("Number(document.querySelector('#tt-status').dataset.step) >= 10", timeout=120_000)
    page.wait_for_function("document.querySelector('#tt-chart-loss canvas, #tt-chart-loss svg') !== null")
    assert "running" in status.inner_text() and "first loss point" in status.inner_text()
    shot(page, "en-3-train")
    page.locator("#tt-stop").click()
    page.wait_for_function("document.querySelector('#tt-status').dataset.state === 'stopped'", timeout=120_000)
    stopped_at = int(status.get_attribute("data-step"))
    partial = work / "runs" / ".tiny.partial" / "checkpoints"
    sealed = sorted(checkpoints.step_of(p) for p in partial.glob("checkpoint-*") if (p / checkpoints.SEAL).is_file())
    assert sealed and sealed[-1] == stopped_at, (sealed, stopped_at)  # the clean stop sealed a checkpoint at its step
    assert "--resume" in page.locator("#tt-result").inner_text()
    page.locator("#tt-resume").click()
    page.wait_for_function("document.querySelector('#tt-status').dataset.state === 'finished'", timeout=300_000)
    summary = json.loads((work / "runs" / "tiny" / "summary.json").read_text())
    assert summary["resumed_from_step"] == stopped_at and summary["optimizer_steps"] == int(status.get_attribute("data-max-steps"))
    shot(page, "en-3-train-finished")


def test_the_finished_run_opens_and_chats_one_turn(page, server):
    url, work, _ = server
    if not (work / "runs" / "tiny" / "summary.json").is_file():
        pytest.skip("needs the run of the training test")
    page.goto(url + "/")
    tab(page, "Runs")
    page.locator("#tt-runs-refresh").click()
    page.wait_for_function("document.querySelector('#tt-summary') && document.querySelector('#tt-summary').innerText.includes('optimizer_steps')")
    shot(page, "en-4-runs")
    tab(page, "Compare and chat")
    page.locator("#tt-question textarea").fill("What is the first-line treatment of anaphylaxis?")
    page.locator("#tt-max-new input").fill("12")
    page.locator("#tt-send").click()
    page.wait_for_function("document.querySelectorAll('#tt-chat-tuned .message').length >= 2", timeout=180_000)
    assert page.locator("#tt-chat-base").inner_text().strip() and "anaphylaxis" in page.locator("#tt-chat-tuned").inner_text()
    shot(page, "en-5-chat")
    tab(page, "Export")
    page.wait_for_function("document.querySelector('#tt-gguf-size').innerText.includes('MiB')")
    shot(page, "en-6-export")


def test_the_page_switches_to_chinese(page, server):
    url, _, _ = server
    page.goto(url + "/")
    page.locator("#tt-lang").click()
    page.wait_for_url(url + "/zh/")
    for name in ("数据", "规划与设置", "训练", "训练记录", "对比与对话", "导出"):
        tab(page, name)
        shot(page, f"zh-{name}")
    tab(page, "数据")
    page.locator("#tt-check").click()
    page.locator("#tt-example").wait_for()
    assert "提示，不训练" in page.locator(".tt-legend").inner_text() and "**数据检查**" not in page.locator("#tt-report").inner_text()
    assert "数据检查" in page.locator("#tt-report").inner_text()
