"""Headless Debian Chromium through selenium (the only selenium import of the tests)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1440,1000", "--hide-scrollbars")

T = TypeVar("T")

__all__ = ["Browser", "By", "WebElement", "missing", "open_browser"]


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    return None


class Browser:
    def __init__(self, driver: webdriver.Chrome, base_url: str, shots: Path) -> None:
        self.driver = driver
        self.base_url = base_url
        self.shots = shots

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return url[len(self.base_url):] if url.startswith(self.base_url) else url

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def attr(self, css: str, name: str) -> str:
        """An attribute of the first element matching ``css`` ("" when it has none)."""
        return self.find(css).get_attribute(name) or ""

    def number(self, css: str, name: str) -> float:
        return float(self.attr(css, name) or "nan")

    def find_all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def wait(self, what: Callable[[], T | None], timeout_s: float = 20.0,
             message: str = "") -> T:
        """Poll ``what`` until it returns something truthy (missing elements count as not yet)."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = what()
                if value:
                    return value
            except (WebDriverException, StaleElementReferenceException, IndexError) as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {message or what}"
                             + (f" (last error: {last})" if last else ""))

    def screenshot(self, name: str) -> Path:
        """Save the whole page (resized to its full height) as a PNG artifact."""
        height = int(self.driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"))
        self.driver.set_window_size(1440, max(900, min(height + 40, 4000)))
        time.sleep(0.3)  # let charts re-layout
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1440, 1000)
        return path

    def console_errors(self) -> list[str]:
        logs: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [e["message"] for e in logs if e.get("level") == "SEVERE"]


@contextmanager
def open_browser(base_url: str, shots: Path) -> Iterator[Browser]:
    profile = Path(tempfile.mkdtemp(prefix="llmos-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield Browser(driver, base_url, shots)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
