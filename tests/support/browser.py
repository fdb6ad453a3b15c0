"""Headless Chromium (Debian's chromium driven by Playwright) for tests that look at pages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page(offline: bool = False, viewport: tuple[int, int] = (1280, 900)) -> Iterator:
    """A page in a fresh browser; `offline` aborts every request that is not a local file (and records it)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium): this test needs a browser")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            size = {"width": viewport[0], "height": viewport[1]}
            context = browser.new_context(viewport=size, offline=offline)
            blocked: list[str] = []
            if offline:

                def block(route) -> None:  # noqa: ANN001 - playwright Route
                    if route.request.url.startswith(("file:", "data:")):
                        route.continue_()
                    else:
                        blocked.append(route.request.url)
                        route.abort()

                context.route("**/*", block)
            page = context.new_page()
            page.blocked_requests = blocked
            yield page
        finally:
            browser.close()
