"""LLM-as-judge: a judge model scores generated answers (MT-Bench, Arena-Hard, AlpacaEval, judged answer
checking). prompts.py builds the judge's requests from predictions, store.py caches its replies by content,
verdicts.py reads a verdict from each reply, stage.py runs the judge stage, scores.py turns verdicts into
scores with confidence intervals."""
