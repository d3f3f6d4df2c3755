"""Predictions -> verdicts: one small named object per way of judging, chosen once from the dataset config.

A multiple-choice row is judged by its convention (OpenCompass: lowest mean NLL over the whole text; lm-eval:
highest log-likelihood, and by characters for acc_norm), a single continuation by whether it is the greedy one,
a generation by its extractor. A new extractor is one class here and one entry in EXTRACTORS.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from hydra_eval import scoring
from hydra_eval.records import GenPrediction, PplPrediction, Prediction, Verdict
from hydra_eval.schema import Convention, DatasetConfig, DatasetMode, Extractor, Metric, PplTask


class Judge(Protocol):
    default_metrics: ClassVar[tuple[Metric, ...]]

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]: ...


def _ppl(row: Prediction) -> PplPrediction:
    assert isinstance(row, PplPrediction), "a ppl judge got a generation row"
    return row


def _gen(row: Prediction) -> GenPrediction:
    assert isinstance(row, GenPrediction), "a gen judge got a ppl row"
    return row


class OpenCompassChoice:
    """OpenCompass PPLInferencer: the candidate with the lowest mean NLL over its whole text wins."""

    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.accuracy,)

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        out = []
        for row in map(_ppl, rows):
            scores = [scoring.opencompass_ppl(c.logprob, c.n_tokens) for c in row.candidates]
            pred = scoring.argmin_first(scores)
            tied = scoring.tied(scores, pred)
            out.append(Verdict(correct=pred == row.gold, scores=tuple(scores), pred=pred, tied=tied))
        return out


class LmevalChoice:
    """lm-eval multiple_choice: the highest log-likelihood wins (acc); divided by characters (acc_norm)."""

    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.acc, Metric.acc_norm)

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        out = []
        for row in map(_ppl, rows):
            logprobs = [c.logprob for c in row.candidates]
            norm = scoring.lmeval_acc_norm_scores(logprobs, row.choices)
            pred, pred_norm = scoring.argmax_first(logprobs), scoring.argmax_first(norm)
            out.append(
                Verdict(
                    correct=pred == row.gold,
                    scores=tuple(logprobs),
                    scores_norm=tuple(norm),
                    pred=pred,
                    pred_norm=pred_norm,
                    correct_norm=pred_norm == row.gold,
                    tied=scoring.tied(logprobs, pred),
                    tied_norm=scoring.tied(norm, pred_norm),
                )
            )
        return out


class Loglikelihood:
    """lm-eval loglikelihood (lambada): correct when the continuation is the greedy one; its log-likelihood
    feeds perplexity."""

    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.acc, Metric.perplexity)

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        return [
            Verdict(correct=row.candidates[0].greedy, logprob=row.candidates[0].logprob) for row in map(_ppl, rows)
        ]


@dataclass(frozen=True)
class FirstLetter:
    """The first option letter that stands alone in the output ("B", "B.", "(B)", "answer is B")."""

    labels: tuple[str, ...]
    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.accuracy,)

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        return [self.one(_gen(row)) for row in rows]

    def one(self, row: GenPrediction) -> Verdict:
        letter = scoring.first_letter(row.output, self.labels)
        pred = self.labels.index(letter) if letter is not None else -1
        return Verdict(correct=pred == row.gold, extracted=True, answer=letter, pred=pred)


@dataclass(frozen=True)
class EditDistance:
    """OpenCompass EDAccEvaluator: the option nearest to the raw output by Levenshtein distance."""

    labels: tuple[str, ...]
    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.accuracy,)

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        out = []
        for row in map(_gen, rows):
            letter = scoring.edit_distance_choice(row.output, self.labels, row.options)
            pred = self.labels.index(letter)
            out.append(Verdict(correct=pred == row.gold, extracted=True, answer=letter, pred=pred))
        return out


class ExactMatch:
    """The output's first line, normalised, equals one of the accepted answers (TriviaQA)."""

    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.accuracy,)

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        return [self.one(_gen(row)) for row in rows]

    def one(self, row: GenPrediction) -> Verdict:
        text = row.output
        correct = scoring.exact_match(text, row.answers or ())
        return Verdict(correct=correct, extracted=True, answer=text.strip().split("\n")[0])


class Gsm8k:
    """lm-eval gsm8k-cot: flexible-extract (the last number) and strict-match ("The answer is N.")."""

    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.accuracy, Metric.accuracy_strict)

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        out = []
        for row in map(_gen, rows):
            strict, flexible = scoring.gsm8k_answers(row.output)
            answer = (row.answers or ("",))[0]
            out.append(
                Verdict(
                    correct=scoring.gsm8k_match(flexible, answer),
                    extracted=True,
                    answer=flexible,
                    correct_strict=scoring.gsm8k_match(strict, answer),
                )
            )
        return out


@dataclass(frozen=True)
class RegexMatch:
    """lm-eval's regex filter then exact_match (BBH, MMLU-Pro): the answer is the pattern's first match (a
    match with groups: its first non-empty group), stripped; none is lm-eval's "[invalid]". Correct when it
    equals the accepted answer, case-folded and without punctuation where asked."""

    pattern: str
    ignore_case: bool = False
    ignore_punctuation: bool = False
    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.accuracy,)

    def extract(self, text: str) -> str | None:
        found = re.findall(self.pattern, text)
        if not found:
            return None
        first = found[0]
        if isinstance(first, tuple):
            first = next((g for g in first if g), None)
            if first is None:
                return None
        return str(first).strip()

    def normal(self, text: str) -> str:
        text = text.lower() if self.ignore_case else text
        return text.translate(str.maketrans("", "", string.punctuation)) if self.ignore_punctuation else text

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        out = []
        for row in map(_gen, rows):
            answer = self.extract(row.output)
            gold = (row.answers or ("",))[0]
            correct = self.normal(answer if answer is not None else "[invalid]") == self.normal(gold)
            out.append(Verdict(correct=correct, extracted=True, answer=answer))
        return out


class MathVerify:
    """Competition math: the output's final answer (its `\\boxed{}` one, else its last LaTeX or plain
    expression; several boxed answers are read as one set) is equivalent to an accepted answer by
    math-verify, the library lm-eval's minerva_math uses: `\\frac{1}{2}` equals `0.5`, `x=3` equals `3`."""

    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.accuracy,)

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        from math_verify import parse, verify

        out = []
        for row in map(_gen, rows):
            pred = parse(row.output)
            golds = [parse(a) for a in row.answers or ()]
            correct = bool(pred) and any(verify(gold, pred) for gold in golds)
            answer = str(pred[-1]) if pred else None  # the extracted text, as math-verify read it
            out.append(Verdict(correct=correct, extracted=True, answer=answer))
        return out


@dataclass(frozen=True)
class Auto:
    """dataset=custom: exact match for rows with accepted answers, the first letter for the others."""

    labels: tuple[str, ...]
    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.accuracy,)

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        letters, exact = FirstLetter(self.labels), ExactMatch()
        return [exact.one(row) if row.answers else letters.one(row) for row in map(_gen, rows)]


@dataclass(frozen=True)
class Execute:
    """Code (HumanEval): every completion runs against the row's tests in the sandbox (hydra_eval/execution.py)."""

    dataset: DatasetConfig
    default_metrics: ClassVar[tuple[Metric, ...]] = (Metric.pass_at_1,)  # num_samples > 1: sampling.metrics

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        from hydra_eval import execution

        return execution.judge_rows([_gen(r) for r in rows], self.dataset)


EXTRACTORS: dict[Extractor, Callable[[tuple[str, ...]], Judge]] = {
    Extractor.first_letter: FirstLetter,
    Extractor.edit_distance: EditDistance,
    Extractor.auto: Auto,
}
# Instructions whose checker tokenizes with NLTK's punkt model (sentences; words through word_tokenize)
NEEDS_PUNKT = frozenset({"length_constraints:number_sentences", "change_case:capital_word_frequency"})


class IfEval:
    """IFEval: which of the prompt's instructions the output follows, strict and loose (ifeval_check.py); the
    prompt counts when it follows all of them. A checker that cannot run is the harness's failure."""

    default_metrics: ClassVar[tuple[Metric, ...]] = (
        Metric.prompt_level_strict_acc,
        Metric.inst_level_strict_acc,
        Metric.prompt_level_loose_acc,
        Metric.inst_level_loose_acc,
    )

    def judge(self, rows: Sequence[Prediction]) -> list[Verdict]:
        from hydra_eval import ifeval_check

        out = []
        for row in map(_gen, rows):
            fields = row.fields or {}
            try:
                checked = ifeval_check.check(
                    row.output, fields["instruction_id_list"], fields["kwargs"], row.prompt
                )
            except LookupError as e:  # a resource the checker needs is not here (NLTK's punkt)
                why = " ".join(str(e).split())[:200]  # NLTK's message spans many lines
                out.append(Verdict(correct=False, harness_error=f"IFEval checker: {why}"))
                continue
            out.append(
                Verdict(
                    correct=all(checked.strict),
                    correct_loose=all(checked.loose),
                    inst_strict=checked.strict,
                    inst_loose=checked.loose,
                )
            )
        return out


NO_LABELS: dict[Extractor, Callable[[], Judge]] = {
    Extractor.exact_match: ExactMatch,
    Extractor.gsm8k: Gsm8k,
    Extractor.math: MathVerify,
    Extractor.ifeval: IfEval,
}


def preflight(dataset: DatasetConfig) -> None:
    """What a dataset's judge must check before hours of generation, not after (code: opted in, and the
    sandbox runs a trivial program here)."""
    if dataset.mode is not DatasetMode.gen or dataset.gen is None:
        return
    if dataset.gen.extractor is Extractor.execute:
        from hydra_eval.execution import check_allowed

        check_allowed(dataset.execution, dataset.name)
    if dataset.gen.extractor is Extractor.ifeval:
        _ifeval_preflight(dataset)


def _ifeval_preflight(dataset: DatasetConfig) -> None:
    """Two IFEval checkers need NLTK's punkt model: refuse before generating when a selected prompt has one
    of their instructions and the model is not installed."""
    from hydra_eval.data.loader import load_samples
    from hydra_eval.errors import UserError
    from hydra_eval.ifeval_check import sentence_tokenizer_missing

    why = sentence_tokenizer_missing()
    if why is None:
        return
    rows = [s for s in load_samples(dataset).samples if NEEDS_PUNKT & set(s.fields["instruction_id_list"])]
    if rows:
        raise UserError(
            f"{len(rows)} selected {dataset.name} prompts have instructions ({', '.join(sorted(NEEDS_PUNKT))}) "
            f"that cannot be checked here: {why}"
        )


def ppl_task(task: PplTask, rows: Sequence[Prediction]) -> PplTask:
    """`auto` (dataset=custom): loglikelihood when every row has one candidate (free-form QA), else
    multiple_choice."""
    if task is not PplTask.auto:
        return task
    one = bool(rows) and all(len(_ppl(r).candidates) == 1 for r in rows)
    return PplTask.loglikelihood if one else PplTask.multiple_choice


def for_dataset(dataset: DatasetConfig, rows: Sequence[Prediction]) -> Judge:
    """The judge a dataset config names (the one place a config becomes a judge)."""
    if dataset.mode is DatasetMode.ppl:
        assert dataset.ppl is not None
        if ppl_task(dataset.ppl.task, rows) is PplTask.loglikelihood:
            return Loglikelihood()
        return OpenCompassChoice() if dataset.ppl.convention is Convention.opencompass else LmevalChoice()
    assert dataset.gen is not None
    gen = dataset.gen
    extractor = gen.extractor
    if extractor is Extractor.execute:
        return Execute(dataset)
    if extractor is Extractor.regex:
        return RegexMatch(gen.answer_regex or "", gen.ignore_case, gen.ignore_punctuation)
    if extractor in NO_LABELS:
        return NO_LABELS[extractor]()
    return EXTRACTORS[extractor](tuple(dataset.labels))
