"""Evaluates a checkpoint (latest, or --checkpoint=best), read-only: python eval.py --config=X
--workdir=DIR. Outputs go to DIR/eval/step_N/, with a copy of the latest in DIR/eval/."""

import sys

from absl import app, flags
from ml_collections import config_flags

from jaxmr.cli import define_distributed_flags, init_distributed, parse_flags, run_cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config recipe file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a training run.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_CHECKPOINT = flags.DEFINE_enum(
    "checkpoint",
    "latest",
    ["latest", "best"],
    "Newest checkpoint, or the best one kept by the task's model-selection metric (e.g. dev rSum).",
)
define_distributed_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")

    def run():
        init_distributed()
        from jaxmr.evaluate import evaluate

        evaluate(_CONFIG.value, _WORKDIR.value, step=_STEP.value, checkpoint=_CHECKPOINT.value)

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(app.run(main, flags_parser=parse_flags))
