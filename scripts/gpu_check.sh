#!/usr/bin/env bash
# The GPU check of issue 16, on a lent CUDA machine (its image has torch, transformers and accelerate):
# installs the carried wheels the image lacks, then scores and generates on CUDA in fp32 and bf16 against the
# CPU goldens that `python scripts/gpu_check.py prepare` wrote into .gpu-carry (see scripts/gpu_check.py).
# Through the device tool: run(command="bash scripts/gpu_check.sh", carry=[".gpu-carry"], timeout_s=540).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install --no-index --no-deps --no-build-isolation -q .gpu-carry/wheels/*
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
timeout 480 python scripts/gpu_check.py run --carry .gpu-carry --out "${OUT:-outputs/gpu-check}"
