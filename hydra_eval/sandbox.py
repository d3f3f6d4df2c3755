"""Run model-written Python programs so that they cannot hurt the machine, and say how each one ended.

Each program runs in its own process, started fresh, with:
- a wall-clock timeout (the whole process group is killed) and a CPU-time limit (RLIMIT_CPU);
- an address-space limit (RLIMIT_AS) and a file-size limit (RLIMIT_FSIZE);
- a fresh temporary working directory, removed afterwards, and an environment scrubbed to PATH and LANG;
- with bubblewrap (`bwrap`, Debian's package `bubblewrap`): the whole filesystem read-only except that
  directory, a private /tmp, no network (its own network namespace) and its own PID namespace, so nothing
  it starts outlives it; as root, it also runs under an unused uid with a process limit (RLIMIT_NPROC),
  which stops fork bombs.
Without bwrap (`isolation()` says which), only the process limits, the directory and the environment
apply: the program could still write where the user can and open network connections. hydra-eval logs
this once and refuses to run unless the user accepted it (dataset.execution.require_isolation=false).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

UID_BASE = 61000  # as root, run i-th parallel program as uid UID_BASE + i (no such user: owns nothing)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    memory_mb: int = 1024
    max_processes: int = 32
    max_file_mb: int = 16


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout | error
    detail: str  # last lines of stderr, or why it was stopped


def isolation() -> str:
    """'bwrap' when bubblewrap can make a sandbox here, else 'rlimits'."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "rlimits"
    probe = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--dev", "/dev", "true"],
        capture_output=True,
        timeout=30,
    )
    return "bwrap" if probe.returncode == 0 else "rlimits"


def _limits_prefix(limits: Limits, as_root: bool) -> list[str]:
    """prlimit (util-linux) sets the child's limits before it execs (no preexec_fn: not thread-safe)."""
    cpu = int(limits.timeout_s) + 1
    cmd = ["prlimit", f"--cpu={cpu}", f"--as={limits.memory_mb * 1024 * 1024}"]
    cmd += [f"--fsize={limits.max_file_mb * 1024 * 1024}", "--core=0"]
    if as_root:  # RLIMIT_NPROC counts per uid and root ignores it: it binds once setpriv drops to the uid
        cmd.append(f"--nproc={limits.max_processes}")
    return [*cmd, "--"]


def _command(program: str, workdir: str, mode: str, slot: int, limits: Limits) -> list[str]:
    python = [sys.executable, "-I", "-B", program]
    as_root = mode == "bwrap" and os.geteuid() == 0
    if mode != "bwrap":
        return _limits_prefix(limits, as_root) + python
    cmd = [*_limits_prefix(limits, as_root), "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    cmd += ["--tmpfs", "/tmp"]
    cmd += ["--bind", workdir, workdir, "--chdir", workdir, "--unshare-net", "--unshare-pid", "--unshare-ipc"]
    cmd += ["--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]
    cmd += ["--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", workdir]
    if as_root:
        uid = str(UID_BASE + slot)
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return cmd + python


def _tail(path: str, lines: int = 3, limit: int = 4096) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - limit))
        return " | ".join(f.read().decode("utf-8", "replace").strip().splitlines()[-lines:])


def run_program(source: str, limits: Limits, mode: str, slot: int = 0) -> Outcome:
    """Run one program; passed = it exited 0 within the limits."""
    workdir = tempfile.mkdtemp(prefix="hydra-eval-exec-")  # 0700: no other user can swap the program
    program = os.path.join(workdir, "program.py")
    with open(program, "w", encoding="utf-8") as f:
        f.write(source)
    if mode == "bwrap" and os.geteuid() == 0:  # the program runs as the slot's uid: give it its folder
        uid = UID_BASE + slot
        os.chown(workdir, uid, uid)
        os.chown(program, uid, uid)
    # stderr goes to a file outside the program's reach, capped by RLIMIT_FSIZE, never into our memory
    err_fd, err_path = tempfile.mkstemp(prefix="hydra-eval-exec-", suffix=".err")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir}
    try:
        with os.fdopen(err_fd, "wb") as err:
            proc = subprocess.Popen(
                _command(program, workdir, mode, slot, limits),
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # its own process group: a timeout kills everything it started
            )
        try:
            proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait(timeout=30)
            return Outcome(False, "timeout", f"killed after {limits.timeout_s:g}s")
        if proc.returncode == 0:
            return Outcome(True, "passed", "")
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return Outcome(False, "failed", f"{how}: {_tail(err_path)}")
    except (OSError, subprocess.TimeoutExpired) as e:
        return Outcome(False, "error", f"{type(e).__name__}: {e}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(err_path)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_many(sources: Sequence[str], limits: Limits, mode: str, workers: int) -> list[Outcome]:
    """Run programs in parallel, `workers` at a time; each keeps its own uid slot while it runs."""
    slots = list(range(workers))

    def one(source: str) -> Outcome:
        slot = slots.pop()
        try:
            return run_program(source, limits, mode, slot)
        finally:
            slots.append(slot)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, sources))
