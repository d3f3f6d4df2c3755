"""The judge's requests: for each judged row (and turn, and order), the judge prompt filled with the question,
the answer(s) and the reference, as chat messages.

Built-in prompts are the benchmarks' own, verbatim: MT-Bench's single-answer grading prompts (FastChat
fastchat/llm_judge/data/judge_prompts.jsonl: single-v1, single-math-v1 and their multi-turn forms, Apache-2.0),
Arena-Hard v0.1's pairwise system prompt and template (lm-sys/arena-hard-auto, Apache-2.0), and for reference
mode a prompt of ours in the manner of OpenCompass's GenericLLMEvaluator; their text is in builtin_prompts.json.
A dataset config can give its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_eval.errors import UserError
from hydra_eval.prompts import gen_prompt
from hydra_eval.records import GenPrediction, Message, Sample
from hydra_eval.schema import GenConfig, JudgeMode, JudgePrompt, JudgeSettings, VerdictFormat


def _builtin(name: str) -> JudgePrompt:
    entry = _BUILTIN_TEXT[name]
    return JudgePrompt(system=entry["system"], template=entry["template"])


_BUILTIN_TEXT: dict[str, dict[str, str]] = json.loads(
    (Path(__file__).parent / "builtin_prompts.json").read_text(encoding="utf-8")
)
MT_BENCH_SINGLE = _builtin("mt_bench_single")
MT_BENCH_SINGLE_MATH = _builtin("mt_bench_single_math")
MT_BENCH_SINGLE_MULTI = _builtin("mt_bench_single_multi")
MT_BENCH_SINGLE_MATH_MULTI = _builtin("mt_bench_single_math_multi")
ARENA_HARD = _builtin("arena_hard")
REFERENCE = _builtin("reference")
# mode -> (verdict format, prompt, with reference, later turns, later turns with reference)
BUILTIN: dict[
    JudgeMode, tuple[VerdictFormat, JudgePrompt, JudgePrompt | None, JudgePrompt | None, JudgePrompt | None]
]
BUILTIN = {
    JudgeMode.single: (
        VerdictFormat.rating,
        MT_BENCH_SINGLE,
        MT_BENCH_SINGLE_MATH,
        MT_BENCH_SINGLE_MULTI,
        MT_BENCH_SINGLE_MATH_MULTI,
    ),
    JudgeMode.pairwise: (VerdictFormat.arena, ARENA_HARD, None, None, None),
    JudgeMode.reference: (VerdictFormat.correct, REFERENCE, None, None, None),
}


def verdict_format(settings: JudgeSettings) -> VerdictFormat:
    return settings.verdict or BUILTIN[settings.mode][0]


def _prompt(settings: JudgeSettings, turn: int, has_reference: bool) -> JudgePrompt:
    """The prompt of a turn: a dataset's own prompts when it gives `prompt` (they replace the built-in family
    as a whole), else the mode's built-in ones; the reference form where the row has a reference."""
    _, first, first_ref, later, later_ref = BUILTIN[settings.mode]
    if settings.prompt is not None:
        first, first_ref = settings.prompt, settings.prompt_reference
        later, later_ref = settings.prompt_multi_turn, settings.prompt_multi_turn_reference
    plain_one, ref_one = (first, first_ref) if turn == 1 else (later, later_ref)
    chosen = (ref_one or plain_one) if has_reference else plain_one
    if chosen is None:
        raise UserError(
            f"dataset.judge: no judge prompt for turn {turn}: give dataset.judge.prompt_multi_turn "
            "(the whole conversation, judged on its last answer)"
        )
    return chosen


def version(settings: JudgeSettings) -> str:
    """A short hash of the judge's prompts and verdict format (results and the judgments' meta carry it)."""
    from hydra_eval.config import plain

    chosen = [_prompt_or_none(settings, t, r) for t in (1, 2) for r in (False, True)]
    blob = json.dumps([plain(p) for p in chosen] + [verdict_format(settings).value], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:6]


def _prompt_or_none(settings: JudgeSettings, turn: int, has_reference: bool) -> JudgePrompt | None:
    try:
        return _prompt(settings, turn, has_reference)
    except UserError:
        return None


@dataclass(frozen=True, slots=True)
class JudgeItem:
    """One judge request: which row, turn (1-based) and game (0: single/reference; pairwise 1: the baseline is
    assistant A, 2: the judged model is A), and the messages."""

    idx: int
    id: str
    turn: int
    game: int
    messages: tuple[Message, ...]


def _fill(prompt: JudgePrompt, fields: Mapping[str, Any], where: str) -> tuple[Message, ...]:
    try:
        user = prompt.template.format_map(fields)
    except KeyError as e:
        raise UserError(
            f"dataset.judge prompt of {where} uses {{{e.args[0]}}}, which this row does not have "
            f"(it has: {', '.join(sorted(fields))})"
        ) from None
    system = [Message("system", prompt.system)] if prompt.system else []
    return (*system, Message("user", user))


def questions(gen: GenConfig, sample: Sample) -> list[str]:
    """The user turns of a row as the model was asked them: each turn (multi-turn), else the question rendered
    by the dataset's template from its sample, without few-shot examples or system prompt."""
    if gen.turns_field:
        return [gen.template.format(**sample.fields, turn=t) for t in sample.fields[gen.turns_field]]
    return [gen_prompt(gen, sample)]


def answers(row: GenPrediction) -> list[str]:
    """The model's answer to each turn (the answer after any reasoning)."""
    return list(row.turns) if row.turns is not None else [row.output]


def turns_judged(settings: JudgeSettings, n_turns: int) -> list[int]:
    return [t for t in (settings.turns or range(1, n_turns + 1)) if 1 <= t <= n_turns]


def _common(
    settings: JudgeSettings, gen: GenConfig, row: GenPrediction, sample: Sample
) -> tuple[dict[str, Any], bool]:
    qs = questions(gen, sample)
    fields: dict[str, Any] = {f"question_{i}": q for i, q in enumerate(qs, 1)}
    refs = sample.fields.get(settings.reference_field) if settings.reference_field else None
    if refs:
        fields.update({f"ref_answer_{i}": r for i, r in enumerate(refs, 1)})
    fields["gold"] = (row.answers or ("",))[0]
    return fields, bool(refs)


def items(
    settings: JudgeSettings,
    gen: GenConfig,
    rows: Sequence[GenPrediction],
    samples: Mapping[str, Sample],
    baseline: Mapping[str, list[str]] | None = None,
) -> list[JudgeItem]:
    """Every judge request for these rows: one per judged turn (single, reference), two per judged turn
    (pairwise: both orders). `samples` maps a row id to its sample (the question, the reference answers),
    `baseline` to the baseline's answer per turn."""
    out: list[JudgeItem] = []
    for row in rows:
        if row.id not in samples:
            raise UserError(f"row {row.id} of the predictions is not in the dataset now: rerun mode=infer")
        fields, has_ref = _common(settings, gen, row, samples[row.id])
        mine = answers(row)
        fields.update({f"answer_{i}": a for i, a in enumerate(mine, 1)})
        for turn in turns_judged(settings, len(mine)):
            prompt = _prompt(settings, turn, has_ref)
            here = {**fields, "question": fields[f"question_{turn}"], "answer": mine[turn - 1]}
            where = f"row {row.id} turn {turn}"
            if settings.mode is not JudgeMode.pairwise:
                out.append(JudgeItem(row.idx, row.id, turn, 0, _fill(prompt, here, where)))
                continue
            assert baseline is not None
            theirs = baseline[row.id]
            for game, (a, b) in ((1, (theirs, mine)), (2, (mine, theirs))):
                pair = {f"answer_a_{i}": x for i, x in enumerate(a, 1)} | {
                    f"answer_b_{i}": x for i, x in enumerate(b, 1)
                }
                pair.update(answer_a=a[turn - 1], answer_b=b[turn - 1])
                out.append(JudgeItem(row.idx, row.id, turn, game, _fill(prompt, {**here, **pair}, where)))
    return out
