"""Dataset readers that misbehave on purpose, for sweep tests (named in overrides as dataset.read_local)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from hydra_eval.data.files import read_rows_with_labels


def fail_once(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """Fails the first time (when the marker file $HYDRA_EVAL_TEST_MARKER does not exist yet), then reads."""
    marker = Path(os.environ["HYDRA_EVAL_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("failed once\n")
        raise OSError("simulated failure of a first attempt")
    return read_rows_with_labels(directory, files)


def hang(directory: Path, files: dict[str, str]) -> list[dict[str, Any]]:
    """Never finishes on its own (a job for the scheduler to kill)."""
    time.sleep(3600)
    return read_rows_with_labels(directory, files)
