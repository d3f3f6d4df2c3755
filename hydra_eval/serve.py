"""A serving command started inside the job (vLLM's OpenAI server, SGLang, llama.cpp's server), on the job's
GPUs (it inherits CUDA_VISIBLE_DEVICES) and a free port; stopped when the job ends, fails or is cancelled.

No orphan survives the job: the server runs in a process group of its own, which stop() ends (SIGTERM, then
SIGKILL); a SIGTERM to the job (scancel, a cancelled submitit job) stops it first; and if the job itself is
killed, the kernel sends SIGTERM to the group's first process (PR_SET_PDEATHSIG), a guard
(hydra_eval/serve_guard.py) that runs the command and then ends the whole group.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from hydra_eval.errors import HarnessError, UserError
from hydra_eval.schema import ServeConfig

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def command_line(serve: ServeConfig, host: str, port: int) -> list[str]:
    """The configured command with {host} and {port} filled in."""
    if not serve.command:
        raise UserError("model.api.serve.command is empty: name the serving command to start")
    return [part.replace("{host}", host).replace("{port}", str(port)) for part in serve.command]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _tail(path: Path, chars: int = 600) -> str:
    try:
        text = path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[-chars:]


class ManagedServer:
    """One server process for one job: start() -> base URL, stop() ends it and everything it started."""

    def __init__(self, serve: ServeConfig, log_path: Path, api_key: str | None = None) -> None:
        self.serve = serve
        self.log_path = log_path
        self.api_key = api_key
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._previous_sigterm: Any = None

    def start(self) -> str:
        serve = self.serve
        port = serve.port or free_port(serve.host)
        cmd = command_line(serve, serve.host, port)
        self.base_url = f"http://{serve.host}:{port}{serve.url_path}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **{k: str(v) for k, v in serve.env.items()}}
        if shutil.which(cmd[0], path=env.get("PATH")) is None:
            raise UserError(f"cannot start the server '{cmd[0]}': no such program")
        guarded = [sys.executable, "-m", "hydra_eval.serve_guard", str(serve.stop_timeout_s), *cmd]
        t0 = time.perf_counter()
        with self.log_path.open("ab") as out:
            try:
                self.proc = subprocess.Popen(
                    guarded, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent
                )
            except OSError as e:
                raise UserError(f"cannot start the server '{cmd[0]}': {e.strerror}") from None
        self._trap_sigterm()
        self._write_pid(cmd)
        log.info("server started (pid %d): %s; log %s", self.proc.pid, " ".join(cmd), self.log_path)
        deadline = time.monotonic() + serve.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise HarnessError(f"the server exited with code {code} before answering: {_tail(self.log_path)}")
            if self.ready():
                log.info("server answers at %s after %.1fs", self.base_url, time.perf_counter() - t0)
                return self.base_url
            time.sleep(0.5)
        self.stop()
        raise HarnessError(
            f"the server did not answer at {self.base_url} within {serve.ready_timeout_s:.0f}s "
            f"(model.api.serve.ready_timeout_s): {_tail(self.log_path)}"
        )

    def ready(self) -> bool:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        request = urllib.request.Request(f"{self.base_url}/models", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def _write_pid(self, cmd: list[str]) -> None:
        assert self.proc is not None
        record = {"pid": self.proc.pid, "pgid": self.proc.pid, "command": cmd, "base_url": self.base_url}
        self.log_path.with_suffix(".json").write_text(json.dumps(record) + "\n")

    def _trap_sigterm(self) -> None:
        """A SIGTERM to the job stops the server, then does what it did before (submitit's handler, or
        the default: the job ends)."""
        with contextlib.suppress(ValueError):  # not the main thread: the parent-death signal still holds
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.stop()
        previous = self._previous_sigterm
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise SystemExit(128 + signum)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if self._previous_sigterm is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.serve.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("server %d ignored SIGTERM for %.0fs: killed", proc.pid, self.serve.stop_timeout_s)
        with contextlib.suppress(ProcessLookupError):  # whatever it started and left in its group
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        log.info("server %d stopped", proc.pid)
