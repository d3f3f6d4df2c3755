"""A server the job starts and stops itself (hydra_eval/serve.py), with Python's http.server standing in for a
model server: it answers GET /v1/models from a folder. The real servers are in tests/test_api.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hydra_eval.errors import HarnessError, UserError
from hydra_eval.schema import ServeConfig
from hydra_eval.serve import ManagedServer, command_line

pytestmark = pytest.mark.process


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))  # a zombie is gone


def wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def http_server(folder: Path, **kwargs: object) -> ServeConfig:
    (folder / "v1").mkdir(parents=True, exist_ok=True)
    (folder / "v1" / "models").write_text('{"data": []}')
    # the server starts a child of its own (a stand-in for vLLM's engine process): stop() must end it too
    script = textwrap.dedent(
        f"""
        import subprocess, sys, http.server, functools
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(folder / "child.pid")!r}, "w").write(str(child.pid))
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory={str(folder)!r})
        http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), handler).serve_forever()
        """
    )
    return ServeConfig(command=[sys.executable, "-c", script, "{host}", "{port}"], **kwargs)  # type: ignore[arg-type]


def test_command_gets_host_and_port() -> None:
    serve = ServeConfig(command=["srv", "--host", "{host}", "--port={port}"])
    assert command_line(serve, "127.0.0.1", 8123) == ["srv", "--host", "127.0.0.1", "--port=8123"]
    with pytest.raises(UserError, match="serve.command is empty"):
        command_line(ServeConfig(), "127.0.0.1", 1)


def test_started_on_a_free_port_and_stopped_with_its_children(tmp_path: Path) -> None:
    server = ManagedServer(http_server(tmp_path), tmp_path / "server.log")
    url = server.start()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    pid = server.proc.pid if server.proc else -1
    child = int((tmp_path / "child.pid").read_text())
    assert json.loads((tmp_path / "server.json").read_text())["pid"] == pid
    assert alive(pid) and alive(child)
    server.stop()
    assert wait_gone(pid) and wait_gone(child)
    server.stop()  # twice is harmless


def test_a_server_that_exits_at_once_is_a_harness_error_with_its_log(tmp_path: Path) -> None:
    serve = ServeConfig(command=[sys.executable, "-c", "import sys; print('no GPU found'); sys.exit(3)"])
    with pytest.raises(HarnessError, match="exited with code 3 before answering: no GPU found"):
        ManagedServer(serve, tmp_path / "server.log").start()


def test_a_server_that_never_answers_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    serve = ServeConfig(command=[sys.executable, "-c", "import time; time.sleep(600)"], ready_timeout_s=2)
    server = ManagedServer(serve, tmp_path / "server.log")
    with pytest.raises(HarnessError, match="did not answer .* within 2s"):
        server.start()
    pid = json.loads((tmp_path / "server.json").read_text())["pid"]
    assert wait_gone(pid)


def test_a_missing_program_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot start the server '/nonexistent/vllm'"):
        ManagedServer(ServeConfig(command=["/nonexistent/vllm"]), tmp_path / "server.log").start()


JOB = """
import sys, time
from pathlib import Path
from hydra_eval.schema import ServeConfig
from hydra_eval.serve import ManagedServer
serve = ServeConfig(command=sys.argv[2:])
server = ManagedServer(serve, Path(sys.argv[1]) / "server.log")
server.start()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_server_outlives_a_cancelled_or_killed_job(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM (scancel, a cancelled submitit job) stops the server first; SIGKILL leaves the job no chance,
    and the kernel tells the server's guard (PR_SET_PDEATHSIG), which ends the group: the server's own
    children too (vLLM's engine process outlived a killed job before the guard)."""
    serve = http_server(tmp_path)
    job = subprocess.Popen(
        [sys.executable, "-c", JOB, str(tmp_path), *serve.command], stdout=subprocess.PIPE, text=True
    )
    assert job.stdout is not None and job.stdout.readline().strip() == "ready"
    pid = json.loads((tmp_path / "server.json").read_text())["pid"]
    child = int((tmp_path / "child.pid").read_text())
    job.send_signal(sig)
    assert job.wait(timeout=60) == (143 if sig is signal.SIGTERM else -9)
    job.stdout.close()
    assert wait_gone(pid)
    assert wait_gone(child)  # the whole group, the server's own children included


def test_a_venvs_python_keeps_its_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """${he.program:.venv/bin/python}: the link itself, not the base interpreter it points to (which lacks
    the venv's packages: a managed server failed with 'No module named hydra')."""
    from hydra_eval.config import program_path

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.chdir(tmp_path)
    assert program_path("bin/python") == str(tmp_path / "bin" / "python")
