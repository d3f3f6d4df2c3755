"""dataset=lmeval: lm-eval 0.4.13's own tasks, answered by hydra-eval's backend, scored by lm-eval. The numbers
must equal lm-eval's own evaluator fed the same answers (an lm-eval LM whose methods ask the same backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hydra_eval.backends.fake import FakeBackend, FakeModelConfig
from hydra_eval.errors import UserError
from hydra_eval.outputs import read_jsonl
from hydra_eval.pipeline import run
from hydra_eval.records import GenerationRequest, LoglikelihoodRequest
from hydra_eval.schema import Convention
from tests.conftest import DATA_DIR

pytest.importorskip("lm_eval")  # the `lmeval` extra (make install has it)
from lm_eval.api.model import LM  # noqa: E402

TASKS = ["truthfulqa_mc1", "truthfulqa_mc2", "nq_open"]


@pytest.fixture(scope="module")
def include_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Local copies of nq_open and truthfulqa, and task YAMLs that point lm-eval's own tasks at them."""
    from hydra_eval.data.lmeval_local import lmeval_tasks_dir, nq_open, truthfulqa

    out = tmp_path_factory.mktemp("lmeval_local")
    (out / "tasks").mkdir()
    for make in (nq_open, truthfulqa):
        make(DATA_DIR, out / "data", out / "tasks", lmeval_tasks_dir())
    return out / "tasks"


class SameAnswers(LM):  # type: ignore[misc]
    """lm-eval's side of the comparison: its evaluator asks the same fake backend, one request at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.backend = FakeBackend(FakeModelConfig(name="fake"))

    def loglikelihood(self, requests):  # type: ignore[no-untyped-def]
        groups = [[LoglikelihoodRequest(*r.args)] for r in requests]
        return [(g[0].logprob, g[0].greedy) for g in self.backend.loglikelihood(groups, Convention.lmeval)]

    def generate_until(self, requests):  # type: ignore[no-untyped-def]
        out = []
        for r in requests:
            context, kwargs = r.args
            until = tuple(kwargs.get("until") or ())
            req = GenerationRequest(context, None, stop=until, max_new_tokens=int(kwargs.get("max_gen_toks", 256)))
            out.append(self.backend.generate([req])[0].text)
        return out

    def loglikelihood_rolling(self, requests):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_lmeval_tasks_score_as_lm_evals_own_evaluator(compose_cfg, include_path, tmp_path):
    tmp_out = tmp_path / "out"
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.tasks import TaskManager

    results = run(
        compose_cfg(
            "model=fake",
            "dataset=lmeval",
            f"dataset.lmeval.tasks=[{','.join(TASKS)}]",
            f"dataset.lmeval.include_path=[{include_path}]",
            "dataset.limit=12",
        ),
        print_summary=False,
    )
    assert results is not None
    theirs = simple_evaluate(
        model=SameAnswers(),
        tasks=TASKS,
        task_manager=TaskManager(include_path=str(include_path)),
        limit=12,
        bootstrap_iters=0,
        log_samples=True,
    )
    samples, theirs = theirs["samples"], theirs["results"]
    ours = results.metrics
    assert ours["truthfulqa_mc1/acc"] == pytest.approx(100 * theirs["truthfulqa_mc1"]["acc,none"], abs=1e-12)
    assert ours["truthfulqa_mc2/acc"] == pytest.approx(100 * theirs["truthfulqa_mc2"]["acc,none"], abs=1e-12)
    nq = theirs["nq_open"]["exact_match,remove_whitespace"]
    assert ours["nq_open/exact_match,remove_whitespace"] == pytest.approx(100 * nq, abs=1e-12)
    assert results.n == 36 and results.lmeval["versions"]["truthfulqa_mc2"] == 3.0
    assert results.provenance["lm_eval"] == "0.4.13"  # which lm-eval scored it
    assert 0 < ours["truthfulqa_mc2/acc"] < 100  # the fake model's scores are not degenerate
    # per document too: the job's per-example rows carry lm-eval's own per-sample metrics
    docs = read_jsonl(tmp_out / "judged" / "fake" / "lmeval.jsonl")
    assert len(docs) == 36
    mine = {(d["task"], d["doc_id"]): d["metrics"] for d in docs}
    for task, rows in samples.items():
        for s in rows:
            for key in s["metrics"]:
                label = key if s["filter"] == "none" else f"{key},{s['filter']}"
                assert mine[(task, s["doc_id"])][label] == s[key], (task, s["doc_id"], key)


def test_a_rerun_reuses_every_answer(compose_cfg, include_path, caplog):
    import logging

    args = (
        "model=fake",
        "dataset=lmeval",
        "dataset.lmeval.tasks=[truthfulqa_mc1]",
        f"dataset.lmeval.include_path=[{include_path}]",
        "dataset.limit=4",
    )
    first = run(compose_cfg(*args), print_summary=False)
    caplog.set_level(logging.INFO)
    again = run(compose_cfg(*args), print_summary=False)
    assert first is not None and again is not None and first.metrics == again.metrics
    assert "18 requests; predictions: 18 reused from cache" in caplog.text  # 4 questions, 18 choices in all
    assert "0 to compute" in caplog.text


def test_a_raised_limit_answers_only_the_new_requests(compose_cfg, include_path, tmp_path):
    from hydra_eval.outputs import read_json

    args = (
        "model=fake",
        "dataset=lmeval",
        "dataset.lmeval.tasks=[truthfulqa_mc1]",
        f"dataset.lmeval.include_path=[{include_path}]",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "mode=infer",
    )
    run(compose_cfg(*args, "dataset.limit=4", f"output_dir={tmp_path / 'a'}"), print_summary=False)
    run(compose_cfg(*args, "dataset.limit=5", f"output_dir={tmp_path / 'b'}"), print_summary=False)
    reused = read_json(tmp_path / "b" / "predictions" / "fake" / "lmeval.meta.json")["reused"]
    assert reused["cache"] == 18 and 0 < reused["computed"] < 18  # the fifth question's choices only
    fresh = compose_cfg(*args, "dataset.limit=5", f"output_dir={tmp_path / 'c'}", f"paths.cache_dir={tmp_path}")
    run(fresh, print_summary=False)
    rows = read_jsonl(tmp_path / "b" / "predictions" / "fake" / "lmeval.jsonl")
    assert rows == read_jsonl(tmp_path / "c" / "predictions" / "fake" / "lmeval.jsonl")


def test_unknown_task_and_hub_data_are_one_line(compose_cfg, include_path):
    with pytest.raises(UserError, match="lm-eval has no task or group nosuch_task"):
        run(compose_cfg("model=fake", "dataset=lmeval", "dataset.lmeval.tasks=[nosuch_task]"), print_summary=False)
    with pytest.raises(UserError, match="boolq.*local files"):  # boolq's data is on the hub only: the hub is off
        run(compose_cfg("model=fake", "dataset=lmeval", "dataset.lmeval.tasks=[boolq]"), print_summary=False)


def test_an_lmeval_job_is_logged_to_mlflow(compose_cfg, include_path, tmp_path):
    cfg = compose_cfg(
        "model=fake",
        "dataset=lmeval",
        "dataset.lmeval.tasks=[truthfulqa_mc1]",
        f"dataset.lmeval.include_path=[{include_path}]",
        "dataset.limit=3",
        "tracking=default",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
    )
    assert run(cfg, print_summary=False) is not None
    out = tmp_path / "out"
    assert (out / "mlflow.json").is_file() and not (out / "mlflow.unsynced").exists()


def test_named_sets_read_their_local_copies(compose_cfg, tmp_path):
    """dataset=truthfulqa: lm-eval's truthfulqa_mc1 and mc2 on the data directory's v1 files, copied into the
    job's folder in the schema lm-eval reads; no include_path to give."""
    results = run(compose_cfg("model=fake", "dataset=truthfulqa", "dataset.limit=3"), print_summary=False)
    assert results is not None and results.dataset == "truthfulqa"
    assert {"truthfulqa_mc1/acc", "truthfulqa_mc2/acc"} <= set(results.metrics)
    assert (tmp_path / "out" / "lmeval_local" / "tasks" / "truthfulqa_mc1.yaml").is_file()


def _hub_num_bytes(path: Path) -> int:
    """What a Hugging Face dataset card's num_bytes counts for these columns: each string's UTF-8 bytes + 4,
    a list 4, each int64 8."""
    import json

    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        for key, value in json.loads(line).items():
            if isinstance(value, str):
                total += len(value.encode()) + 4
            elif key == "choices":
                total += 4 + sum(len(c.encode()) + 4 for c in value)
            elif key == "gold":
                total += 4 + 8 * len(value)
    return total


def test_agieval_copies_are_the_hub_datasets_byte_for_byte(tmp_path):
    """The query is AGIEval's own zero-shot prompt, as hails/agieval-* hold it: the test split's num_bytes on
    the hub cards (hails: sat-math, math, gaokao-mathcloze; dmayhem93, same data: gaokao-physics, -mathqa)."""
    from hydra_eval.data.lmeval_local import agieval, lmeval_tasks_dir

    (tmp_path / "tasks").mkdir()
    assert (
        agieval(DATA_DIR, tmp_path / "data", tmp_path / "tasks", lmeval_tasks_dir())
        == "agieval: 21 tasks, 8269 rows"
    )
    cards = {"sat-math": 110388, "math": 226532, "gaokao-mathcloze": 24078}
    cards |= {"gaokao-physics": 136757, "gaokao-mathqa": 140041}  # multi-answer golds: "AD", "A B D", lists
    for name, num_bytes in cards.items():
        assert _hub_num_bytes(tmp_path / "data" / "agieval" / f"{name}.jsonl") == num_bytes, name
    assert (tmp_path / "tasks" / "agieval_sat_math.yaml").is_file()


def test_named_agieval_and_race_run_lm_evals_tasks(compose_cfg, tmp_path):
    import json

    results = run(compose_cfg("model=fake", "dataset=race", "dataset.limit=2"), print_summary=False)
    assert results is not None and {"race/acc", "race_middle/acc"} <= set(results.metrics)
    docs = read_jsonl(tmp_path / "out" / "judged" / "fake" / "race.jsonl")
    assert [d["task"] for d in docs] == ["race", "race", "race_middle", "race_middle"]
    first = json.loads((tmp_path / "out" / "lmeval_local" / "data" / "race" / "high.jsonl").open().readline())
    files = sorted((DATA_DIR / "race" / "test" / "high").glob("*.txt"), key=lambda f: int(f.stem))
    article = json.loads(files[0].read_text())  # numeric file order (the hub's order is not known offline)
    assert first["article"] == article["article"] and docs[0]["prompt"].startswith(
        "Article: " + article["article"]
    )
    # only the last question is scored; the earlier ones are in the prompt with their answers
    assert article["questions"][-1].replace("_", "").strip()[:20] in docs[0]["prompt"]
    results = run(compose_cfg("model=fake", "dataset=agieval", "dataset.limit=1"), print_summary=False)
    assert results is not None and results.n == 21
    assert {"agieval/acc", "agieval_math/acc", "agieval_logiqa_zh/acc_norm"} <= set(results.metrics)


@pytest.mark.parametrize("n_tokens", [0, 1, 5, 16, 17, 40, 65])
def test_rolling_windows_are_lm_evals(n_tokens):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from hydra_eval.backends.tokenize import rolling_requests

    tokens = list(range(100, 100 + n_tokens))
    theirs = [
        make_disjoint_window(w)
        for w in get_rolling_token_windows(token_list=tokens, prefix_token=7, max_seq_len=16, context_len=1)
    ]
    mine = rolling_requests(tokens, 7, 16)
    assert [(list(r.tokens[: r.score_from]), list(r.tokens[r.score_from :])) for r in mine] == [
        (list(c), list(p)) for c, p in theirs
    ]
    assert all(len(r.tokens) <= 17 for r in mine)  # 16 model inputs, the last token predicted only


def _pages_task(tmp_path: Path) -> Path:
    """A user's own task YAML (include_path): lm-eval's wikitext perplexity task on local 'pages' (RACE
    articles, long enough for several windows)."""
    import json

    from hydra_eval.data.lmeval_local import lmeval_tasks_dir

    files = sorted((DATA_DIR / "race" / "test" / "high").glob("*.txt"))[:6]
    pages = tmp_path / "pages.jsonl"
    pages.write_text("".join(json.dumps({"page": json.loads(f.read_text())["article"]}) + "\n" for f in files))
    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    (tasks / "pages_ppl.yaml").write_text(
        f"include: {lmeval_tasks_dir() / 'wikitext' / 'wikitext.yaml'}\n"
        "task: pages_ppl\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {pages}\n"
        "training_split: null\nvalidation_split: null\ntest_split: test\n"
    )
    return tasks


def test_rolling_loglikelihood_equals_lm_evals_hflm_on_the_same_model(compose_cfg, tmp_path):
    """A loglikelihood_rolling task from a user's include_path: the adapter's windows and scores equal lm-eval's
    own HFLM on the same in-process model (tiny_llama, 64-token windows so each page takes many)."""
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from hydra_eval.backends.tiny import load
    from hydra_eval.config import typed

    tasks = _pages_task(tmp_path)
    cfg = compose_cfg(
        "model=tiny_llama",
        "model.max_seq_len=65",
        "dataset=lmeval",
        "dataset.lmeval.tasks=[pages_ppl]",
        f"dataset.lmeval.include_path=[{tasks}]",
    )
    results = run(cfg, print_summary=False)
    assert results is not None
    model, tokenizer = load(typed(cfg).model)  # type: ignore[arg-type]
    theirs = simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, max_length=64, batch_size=4),
        tasks=["pages_ppl"],
        task_manager=TaskManager(include_path=str(tasks)),
        bootstrap_iters=0,
    )["results"]["pages_ppl"]
    ours = results.metrics
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert ours[f"pages_ppl/{metric}"] == pytest.approx(theirs[f"{metric},none"], rel=1e-5), metric
    assert ours["pages_ppl/word_perplexity"] > 1
    docs = read_jsonl(tmp_path / "out" / "judged" / "tiny_llama" / "lmeval.jsonl")
    loglik, words = docs[0]["metrics"]["word_perplexity"]  # lm-eval's (ll, n_words) as numbers, not a repr
    assert loglik < 0 and words == len(docs[0]["target"].split())


def test_served_models_refuse_rolling_in_one_line():
    from hydra_eval.backends.api import ApiBackend, OpenAIModelConfig

    with pytest.raises(UserError, match="rolling log-likelihood.*in-process"):
        ApiBackend(OpenAIModelConfig(name="x")).loglikelihood_rolling(["text"])


def test_a_hub_dataset_reads_a_local_folder_in_the_hubs_layout(compose_cfg, include_path, tmp_path):
    """dataset.lmeval.hub_dirs: lm-eval's own truthfulqa_mc1 (no shadow YAML) reads truthfulqa/truthful_qa from
    a folder laid out as the hub repo (README configs, <config>/<split> files); a bad entry is one line."""
    repo = tmp_path / "truthful_qa"
    (repo / "multiple_choice").mkdir(parents=True)
    rows = (include_path.parent / "data" / "truthfulqa" / "validation.jsonl").read_text().splitlines()
    (repo / "multiple_choice" / "validation.jsonl").write_text("\n".join(rows[:5]) + "\n")
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: multiple_choice\n  data_files:\n  - split: validation\n"
        "    path: multiple_choice/validation.jsonl\n---\n"
    )
    args = ("model=fake", "dataset=lmeval", "dataset.lmeval.tasks=[truthfulqa_mc1]")
    results = run(compose_cfg(*args, f"dataset.lmeval.hub_dirs=['truthfulqa/truthful_qa={repo}']"), False)
    assert results is not None and results.n == 5  # all the folder has: it was read, not the hub
    with pytest.raises(UserError, match="hub_dirs: 'truthfulqa' is not"):
        run(compose_cfg(*args, "dataset.lmeval.hub_dirs=[truthfulqa]"), print_summary=False)
    with pytest.raises(UserError, match="no such folder"):
        run(compose_cfg(*args, f"dataset.lmeval.hub_dirs=['truthfulqa/truthful_qa={repo}/nope']"), False)


def test_backends_without_rolling_still_run_other_tasks():
    """A served model refuses rolling log-likelihood; lm-eval's other request types must not ask it."""
    from hydra_eval import lmeval

    class NoRolling(FakeBackend):
        def loglikelihood_rolling(self, texts):  # type: ignore[no-untyped-def]
            raise UserError("no rolling here")

    rows = [{"idx": 0, "task": "t", "doc_id": 0, "choice": 0, "type": "generate_until", "repeats": 1,
             "args": ["Q: x?\nA:", {"until": ["\n"]}]}]  # fmt: skip
    out = lmeval.answer(NoRolling(FakeModelConfig(name="fake")), rows)
    assert isinstance(out[0]["resp"][0], str)


def _task_yaml(folder: Path, name: str, data: Path, output_type: str = "multiple_choice") -> Path:
    """A user's own multiple-choice task YAML reading one local JSON lines file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        f"output_type: {output_type}\ntest_split: test\n"
        'doc_to_text: "{{question}}"\ndoc_to_target: 0\ndoc_to_choice: ["a", "b"]\nmetric_list:\n  - metric: acc\n'
    )
    return folder


def test_a_malformed_task_yaml_or_a_missing_include_folder_is_named(compose_cfg, tmp_path):
    """Not 'no task': the YAML lm-eval skipped (with the parser's reason), or the folder that is not there."""
    bad = tmp_path / "bad_tasks"
    bad.mkdir()
    (bad / "mine.yaml").write_text("task: mine\n  dataset_path: [unclosed\n")
    args = ("model=fake", "dataset=lmeval", "dataset.lmeval.tasks=[mine]")
    with pytest.raises(UserError, match=r"no task or group mine.*mine\.yaml.*line 2") as e:
        run(compose_cfg(*args, f"dataset.lmeval.include_path=[{bad}]"), print_summary=False)
    assert "\n" not in str(e.value)
    missing = tmp_path / "no_such_tasks"
    with pytest.raises(UserError, match=f"dataset.lmeval.include_path: {missing}: no such folder"):
        run(compose_cfg(*args, f"dataset.lmeval.include_path=[{missing}]"), print_summary=False)


def test_a_task_with_missing_data_or_a_bad_output_type_is_one_line(compose_cfg, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"question": "q?"}\n')
    gone = _task_yaml(tmp_path / "gone", "gone_task", tmp_path / "nope.jsonl")
    args = ("model=fake", "dataset=lmeval")
    with pytest.raises(UserError, match=r"tasks=gone_task: a task's data is missing: .*nope\.jsonl") as e:
        run(compose_cfg(*args, "dataset.lmeval.tasks=[gone_task]", f"dataset.lmeval.include_path=[{gone}]"), False)
    assert "\n" not in str(e.value)
    typo = _task_yaml(tmp_path / "typo", "typo_task", rows, output_type="multiple_choise")
    with pytest.raises(
        UserError, match=r"tasks=typo_task: lm-eval cannot build it: .*invalid output_type 'multiple_choise'"
    ):
        run(compose_cfg(*args, "dataset.lmeval.tasks=[typo_task]", f"dataset.lmeval.include_path=[{typo}]"), False)
    assert not list(tmp_path.rglob("predictions"))
