"""One control group per sandboxed program: a memory and process budget for all of its processes together, and
a kill that reaches every one of them (a `setsid` daemon included).

cgroup v1 (memory and pids hierarchies) or v2 (memory and pids enabled below this process's group), wherever
this process may create a group under its own (as root, usually). `Group.create` returns None where it cannot;
the sandbox then falls back to per-process limits (docs/datasets.md).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own(hierarchy: str) -> str | None:
    """This process's group in a v1 hierarchy ('memory', 'pids') or in v2 (''), from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if hierarchy in controllers.split(",") or (not hierarchy and not controllers):
            return path
    return None


def _make(parent: Path, name: str) -> Path | None:
    folder = parent / name
    try:
        folder.mkdir()
    except OSError:
        return None
    return folder


def available() -> bool:
    """Whether this process may make a group with both limits here (makes one, and removes it)."""
    group = Group.create(f"hydra-eval-probe-{os.getpid()}", 64 << 20, 8)
    if group is None:
        return False
    group.remove()
    return True


@dataclass(frozen=True)
class Group:
    folders: tuple[Path, ...]  # one per hierarchy (v1: memory, pids) or one (v2)
    version: int

    @classmethod
    def create(cls, name: str, memory_bytes: int, max_pids: int) -> Group | None:
        """A fresh group with these limits, or None where this process may not make one."""
        return cls._v1(name, memory_bytes, max_pids) or cls._v2(name, memory_bytes, max_pids)

    @classmethod
    def _v1(cls, name: str, memory_bytes: int, max_pids: int) -> Group | None:
        mem_own, pids_own = _own("memory"), _own("pids")
        if mem_own is None or pids_own is None or not (ROOT / "memory").is_dir() or not (ROOT / "pids").is_dir():
            return None
        memory = _make(ROOT / "memory" / mem_own.lstrip("/"), name)
        pids = _make(ROOT / "pids" / pids_own.lstrip("/"), name) if memory else None
        group = cls(tuple(f for f in (memory, pids) if f), 1)
        if memory is None or pids is None:
            group.remove()
            return None
        try:
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = memory / "memory.memsw.limit_in_bytes"  # memory + swap: no escape into swap
            if swap.exists():
                swap.write_text(str(memory_bytes))
            (pids / "pids.max").write_text(str(max_pids))
        except OSError:
            group.remove()
            return None
        return group

    @classmethod
    def _v2(cls, name: str, memory_bytes: int, max_pids: int) -> Group | None:
        own = _own("")
        if own is None or not (ROOT / "cgroup.controllers").is_file():
            return None
        parent = ROOT / own.lstrip("/")
        with contextlib.suppress(OSError):
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        folder = _make(parent, name)
        if folder is None:
            return None
        group = cls((folder,), 2)
        try:
            (folder / "memory.max").write_text(str(memory_bytes))
            (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(max_pids))
        except OSError:
            group.remove()
            return None
        return group

    def enter_prefix(self) -> list[str]:
        """A command prefix that moves the started process into the group before it execs the rest, so
        everything it starts is inside from the first instruction on."""
        moves = " && ".join(f"echo $$ > {shlex.quote(str(f / 'cgroup.procs'))}" for f in self.folders)
        return ["/bin/sh", "-c", f'{moves} && exec "$@"', "sh"]

    def pids(self) -> list[int]:
        found: set[int] = set()
        for folder in self.folders:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
        return sorted(found)

    def kill(self, wait_s: float = 10.0) -> None:
        """SIGKILL every process in the group, until none is left (v2: cgroup.kill, at once)."""
        kill_file = self.folders[0] / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        deadline = time.monotonic() + wait_s
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def out_of_memory(self) -> bool:
        """The kernel killed a process of the group for its memory limit."""
        folder = self.folders[0]
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        with contextlib.suppress(OSError):
            for line in (folder / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def remove(self) -> None:
        for folder in self.folders:
            with contextlib.suppress(OSError):
                folder.rmdir()
