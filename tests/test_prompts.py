from omegaconf import OmegaConf

from hydra_eval import prompts
from hydra_eval.backends.tokenize import lmeval_request, opencompass_request
from hydra_eval.records import Sample

PIQA = Sample(id="0", fields={"goal": "Open a jar", "sol1": "twist the lid", "sol2": "hit it"}, gold=0)


def test_piqa_renders_opencompass_piqa_ppl_1cf9f0_exactly(compose_cfg):
    ppl = compose_cfg("dataset=piqa").dataset.ppl
    texts = [c + x for c, x in prompts.ppl_candidates(ppl, PIQA)]
    assert texts == [
        "The following makes sense: \nQ: Open a jar\nA: twist the lid\n",
        "The following makes sense: \nQ: Open a jar\nA: hit it\n",
    ]


def test_piqa_lmeval_renders_lmeval_prompt(compose_cfg):
    ppl = compose_cfg("dataset=piqa_lmeval").dataset.ppl
    assert prompts.ppl_candidates(ppl, PIQA) == [
        ("Question: Open a jar\nAnswer:", " twist the lid"),
        ("Question: Open a jar\nAnswer:", " hit it"),
    ]
    assert prompts.choice_texts(ppl, PIQA) == ["twist the lid", "hit it"]


def test_siqa_renders_siqa_gen_e78df3(compose_cfg):
    gen = compose_cfg("dataset=siqa").dataset.gen
    sample = Sample(
        id="0",
        fields={"context": "C", "question": "Q?", "answerA": "a", "answerB": "b", "answerC": "c"},
        gold=0,
    )
    assert prompts.gen_prompt(gen, sample) == "C\nQuestion: Q?\nA. a\nB. b\nC. c\nAnswer:"


def test_version_is_stable_and_changes_with_the_prompt(compose_cfg):
    ds = compose_cfg("dataset=piqa").dataset
    assert prompts.version(ds) == prompts.version(compose_cfg("dataset=piqa").dataset)
    assert len(prompts.version(ds)) == 6
    changed = OmegaConf.merge(ds, {"ppl": {"context": "Q: {goal}\nA:"}})
    assert prompts.version(changed) != prompts.version(ds)
    assert prompts.version(OmegaConf.merge(ds, {"limit": 5})) == prompts.version(ds)  # rows are not the prompt


def fake_encode(text: str, special: bool) -> list[int]:
    return ([0] if special else []) + [ord(c) for c in text]


def test_opencompass_request_scores_every_token_after_the_first():
    r = opencompass_request("ab ", "cd", fake_encode)
    assert r.tokens == (0, 97, 98, 32, 99, 100) and r.score_from == 1


def test_lmeval_request_moves_trailing_space_to_continuation():
    r = lmeval_request("ab ", "cd", fake_encode, prefix_token=7)
    assert r.tokens == (97, 98, 32, 99, 100) and r.score_from == 2
    empty = lmeval_request("", "cd", fake_encode, prefix_token=7)
    assert empty.tokens == (7, 99, 100) and empty.score_from == 1
