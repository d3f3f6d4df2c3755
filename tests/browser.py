"""Headless Chromium for the UI tests: the page's DOM after its scripts ran, or a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


def chromium_or_skip() -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (see .ci/run)")
        pytest.skip("no chromium here (apt-get install chromium)")
    return chromium


def browse(tmp_path: Path, url: str, *extra: str) -> str:
    """Headless Chromium's DOM (with --dump-dom) of a page, after its scripts ran."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=15000",
        "--window-size=1600,1000",
    ]
    profile = tmp_path / f"profile{time.time_ns()}"  # a fresh browser: no workflow switch remembered
    out = subprocess.run(
        [chromium_or_skip(), *flags, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout


def visible_text(dom: str) -> str:
    import re

    return re.sub(
        r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)[^>]*>.*?</\1>", "", dom, flags=re.S))
    )
