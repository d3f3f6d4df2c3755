"""kill -9 a judge job after its first saved block, rerun it, and compare with an uninterrupted run.

Both runs judge the same predictions (a folder from an earlier `mode=infer` or `mode=all` run) with the same
block size (`checkpoint_every`), each with a cache of its own; the killed run's rerun must reuse the saved
blocks, compute only the rest, and end with the uninterrupted run's verdicts, line for line.

    python scripts/judge_kill_resume.py --predictions outputs/runs/<run> --model smollm2_135m \
        --dataset mt_bench --judge smollm2_135m -- dataset.limit=10 dataset.judge.max_new_tokens=512
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "hydra_eval.cli", *args]


def hydra_eval(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(args), cwd=ROOT, capture_output=True, text=True)


def copy_predictions(src: Path, dst: Path, model: str, dataset: str) -> None:
    (dst / "predictions" / model).mkdir(parents=True)
    for name in (f"{dataset}.jsonl", f"{dataset}.meta.json"):
        shutil.copy(src / "predictions" / model / name, dst / "predictions" / model / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=Path, required=True, help="a run folder with predictions/")
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--judge", required=True)
    parser.add_argument("--block", type=int, default=4, help="checkpoint_every: judge calls per saved block")
    parser.add_argument("--work", type=Path, default=None, help="where to run (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*")
    a = parser.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="judge-kill-"))
    common = [
        f"model={a.model}",
        f"dataset={a.dataset}",
        f"judge={a.judge}",
        "mode=judge",
        "tracking=none",
        "progress=false",
        f"checkpoint_every={a.block}",
        *a.overrides,
    ]
    runs = {}
    for name in ("uninterrupted", "killed"):
        copy_predictions(a.predictions, work / name, a.model, a.dataset)
        runs[name] = [*common, f"hydra.run.dir={work / name}", f"paths.cache_dir={work / (name + '_cache')}"]

    t0 = time.time()
    ref = hydra_eval(runs["uninterrupted"])
    assert ref.returncode == 0, ref.stderr[-3000:]
    print(f"uninterrupted run: {time.time() - t0:.0f}s")

    job = subprocess.Popen(command(runs["killed"]), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = work / "killed_cache" / "judgments"
    while True:
        found = list(cache.glob("*/rows.jsonl"))
        if found and found[0].stat().st_size > 0:
            os.kill(job.pid, 9)
            job.wait()
            saved = sum(1 for _ in found[0].open())
            break
        if job.poll() is not None:
            raise SystemExit("the judge job ended before its first block was saved: use a smaller --block")
        time.sleep(0.05)
    print(f"kill -9 after the first saved block: {saved} judge calls saved")
    t1 = time.time()
    rerun = hydra_eval(runs["killed"])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    line = next(x for x in rerun.stderr.splitlines() if "judge: " in x and "reused from cache" in x)
    print(f"rerun ({time.time() - t1:.0f}s): {line.split(' - ', 1)[-1]}")
    rel = Path("judgments") / a.model / f"{a.dataset}.jsonl"
    meta = json.loads((work / "killed" / rel.with_suffix(".meta.json")).read_text())
    print(f"rerun meta: reused {meta['reused']}, computed {meta['computed']} of {meta['requests']}")
    same = (work / "killed" / rel).read_text() == (work / "uninterrupted" / rel).read_text()
    print(f"judgments equal to the uninterrupted run's: {same}")
    again = hydra_eval(runs["killed"])
    meta = json.loads((work / "killed" / rel.with_suffix(".meta.json")).read_text())
    print(f"third run: computed {meta['computed']} (judge loaded: {'loaded in' in again.stderr})")
    if not same or meta["computed"] != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
