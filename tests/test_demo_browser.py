"""End to end: the demo page in headless Chromium (Debian's, driven by Playwright; no download).

Starts the app on a free localhost port with small random-weight models, generates audio from a
typed prompt, runs a codec round trip on an uploaded WAV file, and saves a screenshot.
"""

import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from demo import DemoLimits, DemoModels, Workspace, build_app, launch

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.slow

# Duration of the playable <audio>: the one whose source Gradio has loaded as a blob (the player
# keeps it in a shadow root, which Playwright's locators pierce and document.querySelector does not).
PLAYABLE_DURATION = """audios => {
    const audio = audios.find(a => a.src.startsWith('blob:') && a.readyState >= 1);
    return audio === undefined ? null : audio.duration;
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; the CI machine's cores are shared
    workspace = Workspace(tmp_path_factory.mktemp("demo-workspace"))
    limits = DemoLimits(max_generation_seconds=4.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", "")  # build_app points it into the workspace; restored afterwards
        app = build_app(DemoModels.random(seed=0, device="cpu"), limits, workspace)
        port = free_port()
        launch(app, limits, port=port, block=False)
        yield f"http://127.0.0.1:{port}", workspace
        app.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server[0])
        yield page
        browser.close()


def playable_seconds(page, selector: str) -> float:
    """Wait until the output player ``selector`` can play its audio; returns the audio's duration."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        seconds = page.locator(f"{selector} audio").evaluate_all(PLAYABLE_DURATION)
        if seconds is not None:
            return seconds
        page.wait_for_timeout(200)
    raise TimeoutError(f"no playable audio in {selector} after {TIMEOUT_MS / 1000:g} s")


def test_text_to_audio_in_the_browser(page):
    assert "untrained, output is noise" in page.locator("#model-info").inner_text()
    page.click("#tta-run")  # no prompt yet: a readable message, not a stack trace
    page.get_by_test_id("toast-body").get_by_text("Please describe the sound you want").wait_for()
    page.get_by_test_id("toast-close").click()

    page.fill("#tta-text textarea", "a dog barking in the rain")
    duration = page.locator("#tta-duration input[type=number]")
    duration.fill("2")
    duration.press("Enter")
    page.click("#tta-run")
    assert playable_seconds(page, "#tta-audio") == pytest.approx(2.0, abs=0.02)
    summary = page.locator("#tta-summary").inner_text()
    assert "Generated 2.00 s" in summary and "seed" in summary


def test_codec_round_trip_in_the_browser(page, server, tmp_path):
    source = tmp_path / "tone.wav"
    t = np.arange(22_050) / 22_050
    sf.write(str(source), 0.3 * np.sin(2 * np.pi * 440 * t), 22_050)  # 1 s at 22.05 kHz

    page.get_by_role("tab", name="Codec").click()
    page.locator("#codec-input input[type=file]").set_input_files(str(source))
    page.locator("#codec-input audio").first.wait_for(state="attached")  # upload finished
    workspace = server[1]
    assert any(workspace.gradio_cache.rglob("tone.wav")), "uploads must land in the app's own folder"
    page.click("#codec-run")
    assert playable_seconds(page, "#codec-audio") == pytest.approx(1.0, abs=0.02)
    assert "kbit/s" in page.locator("#codec-summary").inner_text()
    assert ".grvq" in page.locator("#codec-stream").inner_text()

    screenshot = tmp_path / "demo.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("DEMO_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(screenshot, os.environ["DEMO_SCREENSHOT"])


def test_files_outside_the_workspace_are_not_served(server):
    url, _ = server
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{url}/gradio_api/file=/etc/passwd", timeout=10)
    assert caught.value.code == 403
