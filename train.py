"""Trains a jaxmr task: python train.py --config=configs/ivae_synthetic.py --workdir=DIR."""

import sys

from absl import app, flags
from ml_collections import config_flags

from jaxmr.cli import define_distributed_flags, init_distributed, parse_flags, run_cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config recipe file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.")
define_distributed_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")

    def run():
        init_distributed()
        from jaxmr.tasks import build_task
        from jaxmr.train.loop import train_and_evaluate

        train_and_evaluate(build_task(_CONFIG.value), _CONFIG.value, _WORKDIR.value)

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=parse_flags))
