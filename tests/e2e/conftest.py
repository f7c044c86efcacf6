"""Browser tests: a real `prolo serve` on a demo database, driven by headless Chromium.

Chromium comes from Debian's package (`/usr/bin/chromium`; `.ci/run` installs it).
Without it the browser tests skip, except with CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CI

DEMO_PASSWORD = "demo-prolo-2026"
DEMO_DOMAIN = "demo.prolo.example.org"


def chromium_path() -> str | None:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app served by `prolo serve` on a fresh demo database; yields its base URL."""
    db = tmp_path_factory.mktemp("e2e") / "demo.db"
    port = _free_port()
    env = {**os.environ, "PROLO_DATABASE_URL": f"sqlite:///{db}", "PROLO_PORT": str(port)}
    prolo = [sys.executable, "-m", "prolo.cli"]
    subprocess.run([*prolo, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([*prolo, "demo", "--patients", "25"], env=env, check=True, capture_output=True)
    log = db.with_suffix(".log")
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [*prolo, "serve", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        if server.poll() is not None:
            raise RuntimeError(f"prolo serve exited: {log.read_text()[-2000:]}")
    else:
        server.kill()
        raise RuntimeError("prolo serve did not answer /health within 60 s")
    yield base
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        message = "no Chromium found (install Debian's `chromium`; .ci/run does)"
        if CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=path,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: object, live_server: str) -> Iterator[object]:
    context = browser.new_context(base_url=live_server)  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def login(page: object, role: str) -> None:
    """Log in as the demo account for ``role`` (admin, clinician, frontdesk, patient, ...)."""
    page.goto("/login")  # type: ignore[attr-defined]
    page.get_by_label("Email").fill(f"{role}@{DEMO_DOMAIN}")  # type: ignore[attr-defined]
    page.get_by_label("Password").fill(DEMO_PASSWORD)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
