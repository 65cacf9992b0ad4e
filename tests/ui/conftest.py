"""Browser-test harness: the app served on localhost, driven by Playwright with Debian's headless Chromium.

Playwright's own browser download is never used: the browser is the system ``chromium`` (``apt-get install
chromium chromium-driver``, done by ``scripts/install_browser.sh`` in CI). Where it is absent the browser tests
skip with that reason; in CI (``CI=true``) they fail instead, so a missing install step cannot hide.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
]


def chromium_executable() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the app is only ever served on this machine)."""
    return _free_port()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    executable = chromium_executable()
    reason = "Debian's chromium is not installed (apt-get install chromium chromium-driver)"
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must install it (scripts/install_browser.sh)")
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright for Python is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield instance
        finally:
            instance.close()
