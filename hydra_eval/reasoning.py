"""A reasoning model's output, split into its thinking and the answer that is scored (model.reasoning)."""

from __future__ import annotations

from hydra_eval.records import Split


def split(text: str, start: str = "<think>", end: str = "</think>") -> Split:
    """The answer is what follows the first `end` tag (the reasoning is what comes before it, less a leading
    `start` tag). Templates that open the block in the prompt (Qwen3, DeepSeek-R1) leave only the end tag in
    the output, so the end tag alone decides. An output that opens a block and never closes it has no answer:
    it scores as empty, and `closed` is false so the job can count it. An output with neither tag is all
    answer (the model did not think)."""
    head, tag, tail = text.partition(end)
    if tag:
        reasoning = head.lstrip()
        if reasoning.startswith(start):
            reasoning = reasoning[len(start) :]
        return Split(reasoning=reasoning.strip(), answer=tail.strip(), closed=True)
    if start in text:
        return Split(reasoning=text[text.index(start) + len(start) :].strip(), answer="", closed=False)
    return Split(reasoning=None, answer=text, closed=True)
