"""The first process of a managed server's process group (hydra_eval/serve.py): it runs the serving command
and, on SIGTERM, ends the whole group, the server and whatever the server started.

The job's SIGTERM reaches it through stop() or, when the job itself is killed, from the kernel
(PR_SET_PDEATHSIG): a server's own children (vLLM's engine process) do not watch their parent, and outlived a
killed job before this guard.

    python -m hydra_eval.serve_guard <grace seconds> <command> [args...]
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from types import FrameType


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    grace, command = float(args[0]), args[1:]
    server = subprocess.Popen(command)  # in this process's group
    kill_at: list[float] = []  # set by SIGTERM: the moment the group gets SIGKILL

    def end(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(0, signal.SIGTERM)  # the server and its children; this process ignores it now
        kill_at.append(time.monotonic() + grace)

    signal.signal(signal.SIGTERM, end)
    while True:
        try:
            code = server.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if kill_at and time.monotonic() > kill_at[0]:
                os.killpg(0, signal.SIGKILL)  # the server ignored SIGTERM: the group, this process last
            continue
        if kill_at:
            os.killpg(0, signal.SIGKILL)  # what the server left behind, this process last
        return code


if __name__ == "__main__":
    sys.exit(main())
