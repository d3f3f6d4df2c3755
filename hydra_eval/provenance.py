"""What produced a results file: hydra-eval's version, and its git commit when it runs from a checkout."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

from hydra_eval import __version__


@functools.cache
def git_commit() -> str | None:
    """HEAD of the checkout this package runs from (with `+dirty` for uncommitted changes to tracked files);
    None for an installed wheel, which has no `.git` beside it."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git on the machine, or not a repository after all
        return None
    return head + ("+dirty" if dirty else "") if head else None


def provenance(**extra: Any) -> dict[str, Any]:
    """The `provenance` block of a results file; `extra` adds e.g. the lm-eval version or the judge."""
    return {"hydra_eval": __version__, "git_commit": git_commit(), **extra}
