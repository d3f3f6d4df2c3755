"""WinoGrande dev. Local: MosaicML's schema format (context_options: the sentence up to the blank, filled
with each option; continuation: the rest; gold). Hub (allenai/winogrande): sentence with "_", option1,
option2, answer "1"/"2", converted here the way lm-eval's winogrande task splits it. Partial scoring: the
options are contexts, and only the shared continuation after the blank is scored."""

from __future__ import annotations

from typing import Any

from hydra_eval.data.files import parse_label, require
from hydra_eval.errors import UserError
from hydra_eval.records import Sample


def record_to_sample(row: dict[str, Any], index: int) -> Sample:
    if "sentence" in row:  # hub layout
        require(row, ("sentence", "option1", "option2", "answer"), index, "winogrande")
        cut = row["sentence"].find("_")
        if cut < 0:
            raise UserError(f"winogrande row {index + 1}: malformed row, no '_' blank in the sentence")
        before, after = row["sentence"][:cut], row["sentence"][cut + 1 :]
        contexts = [before + row["option1"], before + row["option2"]]
        continuation, gold = after.strip(), parse_label(row["answer"], range(1, 3), index, "winogrande") - 1
    else:
        require(row, ("context_options", "continuation", "gold"), index, "winogrande")
        contexts, continuation = list(row["context_options"]), row["continuation"].strip()
        gold = parse_label(row["gold"], range(2), index, "winogrande")
        if len(contexts) != 2:
            raise UserError(f"winogrande row {index + 1}: malformed row, {len(contexts)} context options")
    return Sample(id=str(index), fields={"contexts": contexts, "continuation": continuation}, gold=gold)
