"""Local copies of nq_open, truthfulqa, ceval and cmmlu for lm-eval's own tasks, and the --include_path that points
them there (hydra_eval/data/lmeval_local.py). Run it with a Python that has lm_eval (hydra-eval's venv has it):

    python scripts/lmeval_local_tasks.py --out outputs/lmeval_local
"""

from hydra_eval.data.lmeval_local import main

if __name__ == "__main__":
    main()
