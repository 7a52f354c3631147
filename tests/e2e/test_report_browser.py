"""The report opens in headless Chromium without errors (the `report_page` fixture is
test_report's, through tests/e2e/conftest.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from test_report import SECTIONS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Where the Chromium test leaves its screenshot for people to look at (CI keeps the checkout).
SCREENSHOT_DIR = Path(__file__).parents[2] / ".screenshots"


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver, which are not installed here (.ci/run "
    "installs them with apt-get; pytest itself installs nothing)",
)
def test_report_loads_in_headless_chromium_without_errors(report_page):
    webdriver = pytest.importorskip("selenium.webdriver")
    page, _ = report_page
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,4000",
        f"--user-data-dir={page.parent / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    browser = webdriver.Chrome(options=options, service=service)
    try:
        browser.get(page.as_uri())
        assert browser.execute_script("return document.readyState") == "complete"
        pictures = browser.execute_script(
            "return Array.from(document.images, i => [i.complete, i.naturalWidth])"
        )
        assert len(pictures) == 3 and all(done and width > 0 for done, width in pictures)
        sections = browser.execute_script(
            "return Array.from(document.querySelectorAll('section'), s => s.id)"
        )
        assert sections == list(SECTIONS)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, json.dumps(errors)
        screenshot = page.parent / "report.png"
        assert browser.save_screenshot(str(screenshot))
        assert Image.open(screenshot).size[0] >= 1000
        SCREENSHOT_DIR.mkdir(exist_ok=True)
        shutil.copy(screenshot, SCREENSHOT_DIR / "report.png")
    finally:
        browser.quit()
