"""Where a job's files live, and how they are written (atomically, so no half-written result exists)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_eval.errors import UserError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(UserError):
    """No space left where a job writes: says where, and that the files written before it are whole."""

    def __init__(self, folder: Path, what: str):
        super().__init__(
            f"no space left on the disk of {folder}: {what} not written (every file written before is complete "
            "and valid; free some space and run the same command again to finish)"
        )


@contextlib.contextmanager
def disk_errors(folder: Path, what: str) -> Any:
    """Turn 'no space left' (or a full quota) into a DiskFull naming the folder."""
    try:
        yield
    except OSError as e:
        if e.errno in NO_SPACE:
            raise DiskFull(folder, what) from None
        raise


def writable(folder: Path, what: str, hint: str) -> None:
    """Create the folder and a file in it (then remove it), or one line saying it cannot be written: a
    read-only disk, a path below a file, no permission. A real write is the one sure test: os.access cannot
    ask about a folder not made yet, nor see an NFS server's root squashing."""
    try:
        with disk_errors(folder, what):
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = _temp_beside(folder / ".write-test")
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        reason = f"{e.strerror or type(e).__name__}" + (f": {e.filename}" if e.filename else "")
        raise UserError(f"{what} {folder} cannot be written ({reason}): {hint}") from None


LOCK = ".hydra-eval.lock"


@dataclass(frozen=True)
class JobFiles:
    """The one place that names the files of a job folder (a run, a sweep's job, a merge of shards)."""

    root: Path
    model: str
    dataset: str

    @property
    def predictions(self) -> Path:  # infer's rows; never rewritten by eval
        return self.root / "predictions" / self.model / f"{self.dataset}.jsonl"

    @property
    def infer_meta(self) -> Path:
        return self.root / "predictions" / self.model / f"{self.dataset}.meta.json"

    @property
    def judgments(self) -> Path:  # the judge stage's rows: one per judge call, with the verdict read from it
        return self.root / "judgments" / self.model / f"{self.dataset}.jsonl"

    @property
    def judge_meta(self) -> Path:
        return self.root / "judgments" / self.model / f"{self.dataset}.meta.json"

    @property
    def judged(self) -> Path:  # eval's rows: each prediction with its verdict
        return self.root / "judged" / self.model / f"{self.dataset}.jsonl"

    @property
    def results(self) -> Path:
        return self.root / "results" / self.model / f"{self.dataset}.json"

    @property
    def config_yaml(self) -> Path:
        return self.root / "config.yaml"

    @property
    def config_json(self) -> Path:
        return self.root / "config.json"

    @property
    def job_info(self) -> Path:  # hydra job number, sweep folder, Slurm id, host, git revision
        return self.root / "job.json"

    @property
    def judge_config_yaml(self) -> Path:  # a judge job's config, in the folder of the job it judges
        return self.root / "judge.config.yaml"

    @property
    def judge_job_info(self) -> Path:  # ... and its job record (Slurm id, host)
        return self.root / "judge.job.json"

    @property
    def log(self) -> Path:
        return self.root / "hydra-eval.log"

    @property
    def synced(self) -> Path:  # {"run_id", "tracking_uri", "experiment_id"}
        return self.root / "mlflow.json"

    @property
    def unsynced(self) -> Path:  # MLflow failed: mode=sync uploads the job later
        return self.root / "mlflow.unsynced"

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @staticmethod
    def finished_under(root: Path) -> list[JobFiles]:
        """Every job below root (a job folder or a whole sweep) that has a results file."""
        return [
            JobFiles(root=p.parents[2], model=p.parent.name, dataset=p.stem)
            for p in sorted(root.rglob("results/*/*.json"))
        ]

    @staticmethod
    def inferred_under(root: Path) -> list[JobFiles]:
        """Every job below root that has infer metadata."""
        return [
            JobFiles(root=p.parents[2], model=p.parent.name, dataset=p.name.removesuffix(".meta.json"))
            for p in sorted(root.rglob("predictions/*/*.meta.json"))
        ]


def summary_dir(root: Path) -> Path:
    """The summary tables of a job or sweep folder."""
    return root / "summary"


@contextlib.contextmanager
def exclusive(root: Path) -> Any:
    """One live run per folder: another run of the same folder (an explicit hydra.run.dir) is refused while
    this one lives. The lock goes with the process that holds it, a kill -9 included."""
    with disk_errors(root, LOCK):
        fd = os.open(root / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise UserError(
                f"{root} is in use by a live run ({holder}): give this run a folder of its own "
                "(hydra.run.dir=... or hydra.sweep.dir=...), or wait until that one ends"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in path's folder, created with mode 0666 less the umask, as `open` would make the
    file itself (mkstemp's 0600 would leave results unreadable to the rest of a cluster group)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _atomic_write(path: Path, text: str) -> None:
    """Write whole or not at all: a temporary file beside it, renamed over it; on failure no temporary file
    is left and the old file (if any) is untouched."""
    with disk_errors(path.parent, str(path.name)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_beside(path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def write_text(path: Path, text: str) -> None:
    _atomic_write(path, text)


def write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    _atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
