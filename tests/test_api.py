"""API models against a real OpenAI-compatible server: llama.cpp's (llama-cpp-python[server], built into
.llama-venv by `make llama-server`) serving the same SmolLM2 GGUF file as the local model. The server demands a
key, which the jobs read from an environment variable and must never write anywhere."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hydra_eval.backends.api import ApiBackend
from hydra_eval.config import typed
from hydra_eval.records import GenerationRequest, Message
from scripts.llama_server import LlamaServer
from tests.test_tracking import free_port, hydra_eval

pytestmark = pytest.mark.api

KEY_ENV = "HYDRA_EVAL_TEST_API_KEY"
KEY = "he-test-key-5d1c0b7e"


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(free_port(), tmp_path_factory.mktemp("llama") / "server.log", api_key=KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def api(url: str, *more: str) -> list[str]:
    return ["model=llamacpp_smollm2", f"model.api.base_url={url}", f"model.api.api_key_env={KEY_ENV}", *more]


def files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_piqa_siqa_sweep_through_the_server(llama: LlamaServer, tmp_path: Path) -> None:
    """piqa in gen mode (OpenCompass's piqa_gen): this server cannot score prompts (next test)."""
    db = tmp_path / "mlflow.db"
    r = hydra_eval(
        "-m",
        *api(llama.url),
        "dataset=piqa_gen,siqa",
        "dataset.limit=8",
        f"tracking.uri=sqlite:///{db}",
        root=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "llamacpp_smollm2" in r.stdout and "piqa_gen" in r.stdout and "siqa" in r.stdout
    results = {
        json.loads(p.read_text())["dataset"]: json.loads(p.read_text()) for p in tmp_path.rglob("results/*/*.json")
    }
    assert results["piqa_gen"]["usage"]["requests"] == 8
    assert results["siqa"]["usage"]["requests"] == 8
    for res in results.values():
        u = res["usage"]
        assert u["prompt_tokens"] > 0 and 0 < u["latency_p50_s"] <= u["latency_p95_s"]
        assert 0 <= res["metrics"]["accuracy"] <= 100
    siqa_rows = [json.loads(line) for p in tmp_path.rglob("predictions/*/siqa.jsonl") for line in p.open()]
    assert len(siqa_rows) == 8 and all(r["requests"][0]["completion_tokens"] >= 1 for r in siqa_rows)

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("hydra-eval").experiment_id])
    children = [run for run in runs if run.data.tags.get("dataset") == "siqa"]
    assert children and children[0].data.metrics["usage/latency_p95_s"] > 0
    assert files_containing(tmp_path, KEY) == []  # not in configs, logs, predictions or MLflow


def test_ppl_is_refused_when_prompt_logprobs_are_shifted(llama: LlamaServer, tmp_path: Path) -> None:
    """llama-cpp-python 0.3.36 pairs each echoed prompt token with the distribution *after* it when the model
    has no BOS token (SmolLM2): the canary check catches it and the job fails with one line."""
    r = hydra_eval(*api(llama.url), "dataset=piqa", "dataset.limit=4", "tracking=none", root=tmp_path / "refused")
    assert r.returncode != 0
    assert "prompt logprobs that do not match their tokens" in r.stderr
    assert "Traceback" not in r.stderr
    # Forced past the check, the echo + logprobs path still runs end to end: one request per candidate
    forced = api(llama.url, "model.api.check_logprobs=false")
    r = hydra_eval(*forced, "dataset=piqa_lmeval", "dataset.limit=4", "tracking=none", root=tmp_path / "forced")
    assert r.returncode == 0, r.stderr[-3000:]
    [path] = list((tmp_path / "forced").rglob("predictions/*/piqa_lmeval.jsonl"))
    rows = [json.loads(line) for line in path.open()]
    assert len(rows) == 4
    candidates = [c for row in rows for c in row["candidates"]]
    assert all(c["n_scored"] >= 1 and c["logprob"] < 0 and c["request"]["attempts"] == 1 for c in candidates)


def test_a_wrong_key_fails_at_once_with_the_servers_answer(
    llama: LlamaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "not-the-key")
    r = hydra_eval(*api(llama.url), "dataset=siqa", "dataset.limit=2", "tracking=none", root=tmp_path)
    assert r.returncode != 0
    assert "refused a request: HTTP 401" in r.stderr and "retry" not in r.stderr  # 4xx other than 429: no retry


def test_server_stopped_and_restarted_mid_run(llama: LlamaServer, tmp_path: Path) -> None:
    args = api(llama.url, "model.api.max_concurrency=1", "model.api.backoff_s=1", "model.api.retries=8")
    job = hydra_eval(
        *args,
        "dataset=siqa",
        "dataset.limit=12",
        "checkpoint_every=4",
        "tracking=none",
        root=tmp_path,
        background=True,
    )
    rows_file = None
    deadline = time.time() + 300
    while time.time() < deadline and job.poll() is None:
        found = list((tmp_path / ".cache").rglob("rows.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 4:
            rows_file = found[0]
            break
        time.sleep(0.2)
    assert rows_file is not None, job.communicate()[1][-3000:]
    llama.stop()  # mid-run: the first block is saved, the job is waiting on the server
    time.sleep(3)
    llama.start()
    out, err = job.communicate(timeout=600)
    assert job.returncode == 0, err[-3000:]
    log = next(tmp_path.rglob("hydra-eval.log")).read_text()
    assert "retry 1/8" in log, log[-3000:]
    results = json.loads(next(tmp_path.rglob("results/*/siqa.json")).read_text())
    assert results["n"] == 12
    assert results["usage"]["requests"] == 12  # each row paid once: retries are attempts of the same request
    assert results["usage"]["retries"] >= 1


def posts(server: LlamaServer) -> int:
    """Requests the server has answered so far (uvicorn's access log)."""
    return server.log.read_text(errors="replace").count('"POST /v1/')


def test_a_killed_job_rerun_sends_only_the_missing_requests(llama: LlamaServer, tmp_path: Path) -> None:
    """triviaqa goes through /completions (base-model prompt, no chat template) with its stop strings."""
    # 1 request at a time, at most 4 per second: the job is still running when its first block is saved
    args = [*api(llama.url, "model.api.max_concurrency=1", "model.api.requests_per_s=4")]
    args += ["dataset=triviaqa", "dataset.limit=12"]
    args += ["checkpoint_every=4", "tracking=none"]
    job = hydra_eval(*args, root=tmp_path, background=True)
    rows_file = None
    while job.poll() is None:
        found = list((tmp_path / ".cache").rglob("rows.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 4:
            rows_file = found[0]
            break
        time.sleep(0.1)
    job.kill()
    job.communicate()
    assert rows_file is not None
    saved = len(rows_file.read_text().splitlines())
    assert 4 <= saved < 12
    before = posts(llama)
    r = hydra_eval(*args, root=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert posts(llama) - before == 12 - saved  # the saved rows are not asked again
    rows = [json.loads(line) for line in next(tmp_path.rglob("predictions/*/triviaqa.jsonl")).open()]
    assert len(rows) == 12
    assert all("\n" not in row["generation"] and "." not in row["generation"] for row in rows)  # cut at stops


class Flaky429(BaseHTTPRequestHandler):
    """Answers 429 to the first `failures` POSTs (the first with Retry-After), then forwards to `upstream`."""

    upstream = ""
    failures = 0
    retry_after: str | None = None
    seen: list[float] = []
    bodies: list[dict[str, Any]] = []  # every request as the server received it

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        cls.seen.append(time.monotonic())
        cls.bodies.append(json.loads(body))
        if len(cls.seen) <= cls.failures:
            payload = json.dumps(
                {"error": {"message": "rate limited (test proxy)", "type": "rate_limit"}}
            ).encode()
            self.send_response(429)
            if cls.retry_after and len(cls.seen) == 1:
                self.send_header("Retry-After", cls.retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        headers = {"Content-Type": "application/json", "Authorization": self.headers.get("Authorization", "")}
        request = urllib.request.Request(cls.upstream + self.path.removeprefix("/v1"), data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                status, payload = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(llama: LlamaServer) -> Iterator[type[Flaky429]]:
    handler = type("Handler", (Flaky429,), {"upstream": llama.url, "seen": [], "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/v1"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()


def test_429_is_retried_with_backoff_and_retry_after(proxy: Any, compose_cfg: Any) -> None:
    proxy.failures, proxy.retry_after = 3, "1.5"
    cfg = compose_cfg(*api(proxy.url, "model.api.backoff_s=0.4", "model.api.max_concurrency=1"), "dataset=siqa")
    lm = ApiBackend(typed(cfg).model)
    [generation] = lm.generate([GenerationRequest(None, (Message("user", "Say hello."),), (), 4)])
    gaps = [b - a for a, b in zip(proxy.seen, proxy.seen[1:], strict=False)]
    assert len(proxy.seen) == 4 and generation.usage is not None and generation.usage.attempts == 4
    assert gaps[0] >= 1.5  # Retry-After (1.5 s) beats the first backoff (0.4 s)
    assert gaps[1] >= 0.8 and gaps[2] >= 1.6  # then 0.4 * 2^1, 0.4 * 2^2
    assert generation.text


def test_429_until_retries_run_out_fails_the_job_with_the_servers_message(proxy: Any, tmp_path: Path) -> None:
    proxy.failures = 10**6
    args = api(proxy.url, "model.api.retries=2", "model.api.backoff_s=0.1")
    r = hydra_eval(*args, "dataset=siqa", "dataset.limit=2", "tracking=none", root=tmp_path)
    assert r.returncode != 0
    assert (
        "HTTP 429" in r.stderr
        and "rate limited (test proxy)" in r.stderr
        and "gave up after 3 attempts" in r.stderr
    )


def test_served_and_local_models_get_the_same_chat_messages(proxy: Any, compose_cfg: Any, tmp_path: Path) -> None:
    """System prompt and few-shot examples as turns: what the server receives is what the local model renders."""
    from hydra_eval.outputs import read_jsonl
    from hydra_eval.pipeline import run

    common = ["dataset=gsm8k", "dataset.limit=2", "dataset.fewshot.k=2", "dataset.gen.chat_template=true"]
    common += ["dataset.gen.max_out_len=8", "model.system_prompt='Answer with a number.'"]
    served = compose_cfg(*api(proxy.url), *common, f"output_dir={tmp_path / 'served'}")
    run(served, print_summary=False)
    local = compose_cfg("model=smollm2_135m", *common, f"output_dir={tmp_path / 'local'}")
    run(local, print_summary=False)
    sent = [b["messages"] for b in proxy.bodies]
    rendered = [r["messages"] for r in read_jsonl(Path(local.output_dir) / "predictions/smollm2_135m/gsm8k.jsonl")]
    assert len(sent) == 2 and sorted(map(json.dumps, sent)) == sorted(map(json.dumps, rendered))
    roles = [m["role"] for m in sent[0]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert sent[0][0]["content"] == "Answer with a number."


def server_record(root: Path) -> dict[str, Any]:
    [path] = root.rglob("server.json")  # in the job's folder, beside server.log
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def gone(pid: int, timeout: float = 30) -> bool:
    """No process with this pid, or only its zombie, within the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat")
        if not stat.exists() or stat.read_text().split(") ")[1].startswith("Z"):
            return True
        time.sleep(0.2)
    return False


MANAGED = ["model=llamacpp_smollm2_managed", "tracking=none"]


def test_a_managed_server_is_started_by_the_job_and_stopped_at_its_end(tmp_path: Path) -> None:
    r = hydra_eval(*MANAGED, "dataset=siqa", "dataset.limit=4", root=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "siqa" in r.stdout and "llamacpp_smollm2_managed" in r.stdout
    record = server_record(tmp_path)
    assert record["base_url"].startswith("http://127.0.0.1:") and "{port}" not in " ".join(record["command"])
    assert gone(record["pid"])
    log = next(tmp_path.rglob("hydra-eval.log")).read_text()
    assert f"server {record['pid']} stopped" in log
    # a second run of the same job reuses its rows though the server gets another port
    again = hydra_eval(*MANAGED, "dataset=siqa", "dataset.limit=4", root=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    logs = [p.read_text() for p in tmp_path.rglob("hydra-eval.log")]
    assert any("predictions: 4 reused from cache" in text for text in logs)


def test_a_failing_job_stops_its_managed_server(tmp_path: Path) -> None:
    """Every request times out (1 ms, no retry) once the server is up: the job fails, the server goes."""
    r = hydra_eval(*MANAGED, "model.api.timeout_s=0.001", "model.api.retries=0", "dataset=siqa",
                   "dataset.limit=2", root=tmp_path)  # fmt: skip
    assert r.returncode == 1
    assert gone(server_record(tmp_path)["pid"])


def test_a_cancelled_job_stops_its_managed_server(tmp_path: Path) -> None:
    job = hydra_eval(*MANAGED, "model.api.max_concurrency=1", "dataset=siqa", "dataset.limit=40",
                     root=tmp_path, background=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.rglob("server.json")) and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.1)
    time.sleep(2)  # serving
    job.terminate()  # SIGTERM, as scancel and submitit's cancel send
    job.communicate(timeout=60)
    assert job.returncode != 0
    assert gone(server_record(tmp_path)["pid"])


def test_served_multi_turn_answers_judged_by_the_served_model_and_a_rerun_posts_nothing(
    llama: LlamaServer, tmp_path: Path
) -> None:
    """MT-Bench through the server: turn 2 is asked after the model's own turn-1 answer; the same server
    judges both turns; a rerun finds every answer and every verdict in the caches and sends no request."""
    args = [*api(llama.url), "dataset=mt_bench", "dataset.limit=2", "dataset.gen.max_out_len=16"]
    args += ["judge=llamacpp_smollm2", f"judge.api.base_url={llama.url}", f"judge.api.api_key_env={KEY_ENV}"]
    args += ["dataset.judge.max_new_tokens=24", "tracking=none"]
    before = posts(llama)
    first = hydra_eval(*args, f"hydra.run.dir={tmp_path / 'first'}", root=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert posts(llama) - before == 4 + 4  # 2 rows x 2 turns, then 2 x 2 judge calls
    [row, _] = [
        json.loads(x)
        for x in (tmp_path / "first" / "predictions" / "llamacpp_smollm2" / "mt_bench.jsonl")
        .read_text()
        .splitlines()
    ]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user"]
    assert row["messages"][1]["content"] == row["turns"][0] and len(row["requests"]) == 2
    results = json.loads(next((tmp_path / "first").rglob("results/*/mt_bench.json")).read_text())
    m = {**results["metrics"], **results["diagnostics"]}  # the judge's calls and tokens: diagnostics
    assert m["judge_calls"] == 4 and m["judge_prompt_tokens"] > 0 and "judge_latency_mean_s" in m
    assert results["judge"]["computed"] == 4
    before = posts(llama)
    again = hydra_eval(*args, f"hydra.run.dir={tmp_path / 'again'}", root=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert posts(llama) == before  # no generation, no judge call
    assert "judge: 4 reused from cache" in again.stderr
