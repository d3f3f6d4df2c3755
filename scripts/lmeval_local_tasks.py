"""Local copies, in the hub layouts lm-eval's own tasks read, of every set hydra_eval/data/lmeval_local.py and
lmeval_more.py convert (nq_open, truthfulqa, ceval, cmmlu, agieval, race; arc, boolq, piqa, siqa, hellaswag,
winogrande, lambada, gsm8k, bbh; race_pages for wikitext's perplexity task), and the --include_path that points
the tasks there. Run it with a Python that has lm_eval (hydra-eval's venv has it):

    python scripts/lmeval_local_tasks.py --out outputs/lmeval_local
"""

from hydra_eval.data.lmeval_local import main

if __name__ == "__main__":
    main()
