"""`hydra-eval-ui`: the MLflow UI on 127.0.0.1 over the store hydra-eval logs to (same overrides as hydra-eval).

hydra-eval-ui                      # default SQLite store under outputs/, http://127.0.0.1:5000
hydra-eval-ui paths.output_root=/data/evals --port 5001
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("overrides", nargs="*", help="hydra-eval overrides, e.g. paths.output_root=...")
    args = parser.parse_args()
    from hydra import compose, initialize_config_module

    from hydra_eval.config import setup

    setup()
    with initialize_config_module(config_module="hydra_eval.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["output_dir=unused", *args.overrides])
    uri = cfg.tracking.uri
    if not uri.startswith("sqlite:///"):
        sys.exit(f"hydra-eval-ui serves the local store; tracking.uri is {uri}: open that server's page instead")
    from hydra_eval import tracking

    # a fresh store gets its experiment (tagged for the runs view) now, so the link opens on its runs
    url = tracking.experiment_url(cfg.tracking, f"http://127.0.0.1:{args.port}")
    print(f"MLflow UI for {uri}: experiment '{cfg.tracking.experiment}' at {url}", flush=True)
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
        ],
    )


if __name__ == "__main__":
    main()
