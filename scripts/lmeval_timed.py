#!/usr/bin/env python
"""Run lm-eval's CLI in this process with timers around its scoring: for benchmarks only.

Run with lm-eval's own interpreter; arguments after `--stats FILE` go to `lm_eval` unchanged. Writes
{"scoring_s", "generate_s", "forward_calls", "tokens_computed", "head_positions"} to FILE (generate_s: time in
generate_until): tokens_computed counts every
position fed to the model (padding included, as it is computed), head_positions the same (lm-eval takes
logits at every position).
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    stats_path = sys.argv[2]
    sys.argv = ["lm_eval", *sys.argv[3:]]
    from lm_eval.__main__ import cli_evaluate
    from lm_eval.models.huggingface import HFLM

    stats = {"scoring_s": 0.0, "generate_s": 0.0, "forward_calls": 0, "tokens_computed": 0, "head_positions": 0}
    model_call = HFLM._model_call

    def timed(method, key):
        def wrapper(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                stats[key] += time.perf_counter() - start

        return wrapper

    def counted_model_call(self, inps, *args, **kwargs):
        stats["forward_calls"] += 1
        stats["tokens_computed"] += int(inps.numel())
        stats["head_positions"] += int(inps.numel())
        return model_call(self, inps, *args, **kwargs)

    HFLM.loglikelihood = timed(HFLM.loglikelihood, "scoring_s")
    HFLM.generate_until = timed(HFLM.generate_until, "generate_s")
    HFLM._model_call = counted_model_call
    try:
        cli_evaluate()
    finally:
        with open(stats_path, "w") as f:
            json.dump(stats, f)


if __name__ == "__main__":
    main()
