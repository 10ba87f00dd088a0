"""A real browser for tests: headless Chromium driven through Selenium (a pytest plugin, registered in conftest.py).

Debian's ``chromium`` and ``chromium-driver`` packages provide ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``
(``.ci/run`` installs them). Without them the ``browser`` fixture fails the test: a browser test that skips proves
nothing. Selenium Manager is never asked for a driver (both paths are given), so no download happens.

``make screenshot`` runs the tests marked ``screenshot`` with ``SOLICIT_SCREENSHOT=<path>``; such a test takes the
``screenshot_path`` fixture and saves its page there with :func:`save_screenshot` (the variable is read when pytest
starts, because the autouse fixture in conftest.py strips ``SOLICIT_*`` from every test's environment).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 1000)
SCREENSHOT_ENV = "SOLICIT_SCREENSHOT"
_SCREENSHOT_KEY = pytest.StashKey[Path | None]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "screenshot: saves a page to $SOLICIT_SCREENSHOT when set (make screenshot)")
    value = os.environ.get(SCREENSHOT_ENV)
    config.stash[_SCREENSHOT_KEY] = Path(value) if value else None


def chromium_options() -> Options:
    """Headless Chromium as root in a container: no sandbox, no /dev/shm, a fixed window."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    return options


def start_browser() -> webdriver.Chrome:
    """A new headless Chromium; fails the calling test when Chromium or its driver is not installed."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install Debian's browser with "
            "`apt-get update && apt-get install -y chromium chromium-driver` (.ci/run does)",
            pytrace=False,
        )
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=chromium_options())
    driver.set_window_size(*WINDOW)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """A headless Chromium for one test, quit afterwards."""
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshot_path(request: pytest.FixtureRequest) -> Path | None:
    """Where ``make screenshot`` wants this run's picture (``$SOLICIT_SCREENSHOT``), or None."""
    return request.config.stash.get(_SCREENSHOT_KEY, None)


def save_screenshot(driver: webdriver.Chrome, path: Path | str, *, full_page: bool = False) -> Path:
    """The current page as a PNG at ``path`` (parents created): the window, or with ``full_page`` the whole page."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if full_page:
        width, height = driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        driver.set_window_size(max(int(width), WINDOW[0]), int(height) + 200)
    saved = driver.save_screenshot(str(target))
    if full_page:
        driver.set_window_size(*WINDOW)
    if not saved or not target.exists() or target.stat().st_size == 0:
        pytest.fail(f"Chromium did not save a screenshot to {target}")
    return target
