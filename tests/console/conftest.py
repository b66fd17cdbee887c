"""Real-browser harness for the web console: Debian's headless Chromium driven by Selenium.

Every test in this folder is marked ``browser`` and ``e2e``. Tests use the ``browser`` fixture (one
headless Chromium per test module) and the helpers below (``wait_for_text``, ``wait_for``,
``save_screenshot``), imported as ``from tests.console.conftest import ...``.

DO:
- use Debian's packages: ``chromium`` and ``chromium-driver`` (/usr/bin/chromium and
  /usr/bin/chromedriver, the same release so their versions match). ``make test`` installs them
  on Debian-like machines as root; EFSQLITE_CHROMIUM / EFSQLITE_CHROMEDRIVER point elsewhere.
- always give Selenium both paths: ``Service(executable_path=...)`` and
  ``options.binary_location``. With an explicit driver path Selenium skips Selenium Manager.
- wait for what a person would see (``wait_for_text``, ``wait_for``) and keep the implicit wait
  at 0, so a failing wait says what it waited for, on which page, and what was there instead.
- only load pages from loopback addresses (the efsqlite dev stack or a server the test starts).

DON'T:
- let Selenium Manager run (no ``webdriver.Chrome()`` without a Service path): it downloads
  drivers and browsers, and this machine reaches nothing but package registries.
- download a browser or driver by any other means either (webdriver-manager, Chrome for Testing).
- ``time.sleep`` to wait for the page, or reuse a profile: each browser gets a fresh
  ``--user-data-dir`` so nothing leaks between modules or runs.
- skip silently in CI: with CI=true on a Debian-like machine as root a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.selenium_manager import SeleniumManager
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")

WINDOW_WIDTH = 1280
WINDOW_HEIGHT = 900
SCREENSHOT_MAX_HEIGHT = 4000
PAGE_LOAD_TIMEOUT = 30.0
POLL_INTERVAL = 0.1

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in CI and containers: the sandbox cannot start there
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a small /dev/shm in containers crashes tabs
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no update, safe-browsing or other calls out
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}",
)

MISSING_REASON = (
    "headless Chromium is not available (looked at EFSQLITE_CHROMIUM / EFSQLITE_CHROMEDRIVER, "
    "then chromium and chromedriver on PATH): install Debian's chromium and chromium-driver "
    "(make test does on Debian as root)"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``browser`` and ``e2e`` (``pytestmark`` here would not)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.e2e)


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths: the EFSQLITE_* variables first, then PATH; None if any
    is missing."""
    chromium = os.environ.get("EFSQLITE_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("EFSQLITE_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        return None
    if not (os.access(chromium, os.X_OK) and os.access(driver, os.X_OK)):
        return None
    return chromium, driver


def _must_not_skip() -> bool:
    """CI on a Debian-like machine as root can install the browser, so a missing one is a
    failure there rather than a skip."""
    return (
        os.environ.get("CI") == "true"
        and shutil.which("apt-get") is not None
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
    )


def _refuse_selenium_manager(*_args: object, **_kwargs: object) -> dict[str, str]:
    raise AssertionError(
        "Selenium Manager was about to run (it downloads drivers): pass Service(executable_path)"
    )


def chrome_options(chromium: str, profile: Path) -> webdriver.ChromeOptions:
    """Headless Chromium options with a fresh profile folder."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return options


def start_chrome(chromium: str, chromedriver: str, profile: Path, log: Path) -> webdriver.Chrome:
    """Start chromedriver and headless Chromium from explicit paths, never Selenium Manager."""
    service = Service(executable_path=chromedriver, log_output=str(log))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", _refuse_selenium_manager)
        try:
            driver = webdriver.Chrome(service=service, options=chrome_options(chromium, profile))
        except WebDriverException as exc:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            raise RuntimeError(
                f"could not start {chromium} through {chromedriver}: {exc.msg}\n"
                f"chromedriver log ({log}), last lines:\n{tail}"
            ) from exc
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
    driver.implicitly_wait(0)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the test module, quit at teardown."""
    found = find_browser()
    if found is None:
        if _must_not_skip():
            pytest.fail(MISSING_REASON, pytrace=False)
        pytest.skip(MISSING_REASON)
    chromium, chromedriver = found
    root = tmp_path_factory.mktemp("chromium")
    driver = start_chrome(chromium, chromedriver, root / "profile", root / "chromedriver.log")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder tests save PNGs in: $EFSQLITE_CONSOLE_SHOTS if set, else a temporary one."""
    configured = os.environ.get("EFSQLITE_CONSOLE_SHOTS")
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("console-shots")


def save_screenshot(browser: webdriver.Chrome, folder: Path, name: str) -> Path:
    """Save the whole page (up to 4000 px tall, 1280 wide) as ``folder/name.png``."""
    size = browser.get_window_size()
    height = browser.execute_script(
        "return Math.max(document.documentElement.scrollHeight,"
        " document.body ? document.body.scrollHeight : 0);"
    )
    # The window is taller than its viewport by the (headless) browser frame, if any.
    frame = int(size["height"]) - int(browser.execute_script("return window.innerHeight;"))
    target = min(max(int(height), 1) + max(frame, 0), SCREENSHOT_MAX_HEIGHT)
    path = folder / f"{name}.png"
    try:
        browser.set_window_size(WINDOW_WIDTH, max(target, WINDOW_HEIGHT))
        if not browser.save_screenshot(str(path)):
            raise AssertionError(f"could not save a screenshot to {path}")
    finally:
        browser.set_window_size(size["width"], size["height"])
    return path


def _poll(
    browser: webdriver.Chrome,
    predicate: Callable[[webdriver.Chrome], Literal[False] | T],
    timeout: float,
) -> T:
    """``predicate``'s first truthy result; TimeoutException after ``timeout`` seconds."""
    wait: WebDriverWait[webdriver.Chrome] = WebDriverWait(
        browser,
        timeout,
        poll_frequency=POLL_INTERVAL,
        ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
    )
    return wait.until(predicate)


def wait_for(
    browser: webdriver.Chrome,
    predicate: Callable[[webdriver.Chrome], Literal[False] | T],
    timeout: float = 30.0,
    what: str = "the condition",
) -> T:
    """Poll ``predicate(browser)`` until it returns something truthy, and return that.

    Elements that go stale or vanish mid-check count as "not yet". On timeout an AssertionError
    names ``what``, the page's URL and the start of its text.
    """
    try:
        return _poll(browser, predicate, timeout)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout:g}s waiting for {what} on {browser.current_url}\n"
            f"page text: {_body_text(browser)}"
        ) from None


def wait_for_text(
    browser: webdriver.Chrome, css_selector: str, text: str, timeout: float = 30.0
) -> str:
    """Wait until an element matching ``css_selector`` contains ``text``; return its text.

    On timeout an AssertionError gives the URL and each matching element's text, or the start
    of the page's text when nothing matches.
    """

    def matched(driver: webdriver.Chrome) -> str | Literal[False]:
        for element in driver.find_elements(By.CSS_SELECTOR, css_selector):
            seen = element.text
            if text in seen:
                return seen
        return False

    try:
        return _poll(browser, matched, timeout)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout:g}s waiting for {text!r} in {css_selector!r} "
            f"on {browser.current_url}\n{_texts_of(browser, css_selector)}"
        ) from None


def _texts_of(browser: webdriver.Chrome, css_selector: str) -> str:
    try:
        texts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, css_selector)]
    except WebDriverException:
        texts = []
    if texts:
        return "\n".join(f"{css_selector!r} text: {t!r}" for t in texts)
    return f"no element matches {css_selector!r}; page text: {_body_text(browser)}"


def _body_text(browser: webdriver.Chrome) -> str:
    try:
        return repr(browser.find_element(By.TAG_NAME, "body").text[:2000])
    except WebDriverException:
        return "(no body)"
