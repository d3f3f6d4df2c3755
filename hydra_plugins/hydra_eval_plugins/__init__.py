"""hydra-eval's Hydra plugins (Hydra only loads plugins from the hydra_plugins namespace package):
the `eval` sweeper and the `local` / `slurm` submitit launchers."""
