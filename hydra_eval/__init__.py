"""hydra-eval: evaluate LLMs on benchmarks with Hydra configs, OpenCompass- and lm-eval-compatible scores."""

__version__ = "0.1.0"
