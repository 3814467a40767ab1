"""Trains several iIVAE-family variants over seeds and prints a Markdown table of MCC.

  python scripts/compare_variants.py --variants=implicit,ivae,vae --seeds=0,1,2 \
      --workdir=runs/compare [--set model.obs_logvar=-2.3 --set ...]

Each (variant, seed) run is a normal training run in WORKDIR/VARIANT_sSEED (so it resumes if
interrupted); the table reports the final strong/weak MCC (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import ivae_synthetic  # noqa: E402
from jaxmr.tasks import build_task  # noqa: E402
from jaxmr.train.loop import train_and_evaluate  # noqa: E402
from scripts.study_common import parse_set  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variants", default="implicit,ivae,vae")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--workdir", default="runs/compare")
    p.add_argument("--config_arg", default="", help="argument after ':' of the config file")
    p.add_argument("--set", action="append", help="config override key=value (repeatable)")
    args = p.parse_args(argv)
    overrides = parse_set(args.set)
    os.makedirs(args.workdir, exist_ok=True)
    rows = {}
    for variant in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            config = ivae_synthetic.get_config(
                ",".join(filter(None, [args.config_arg, f"variant={variant}"]))
            )
            config.seed = seed
            config.evals.mcc.every_steps = 0  # only at the end
            config.update_from_flattened_dict(overrides)
            t0 = time.perf_counter()
            out = train_and_evaluate(
                build_task(config), config, os.path.join(args.workdir, f"{variant}_s{seed}")
            )
            rows.setdefault(variant, []).append(
                (out["mcc/mcc_strong"], out["mcc/mcc_weak"], time.perf_counter() - t0)
            )
    lines = [
        "| variant | strong MCC (mean ± std) | weak MCC (mean ± std) | per seed (strong) | s/run |",
        "|---|---|---|---|---|",
    ]
    for variant, vals in rows.items():
        a = np.array(vals)
        lines.append(
            f"| {variant} | {a[:, 0].mean():.3f} ± {a[:, 0].std():.3f} | "
            f"{a[:, 1].mean():.3f} ± {a[:, 1].std():.3f} | "
            f"{' / '.join(f'{v:.3f}' for v in a[:, 0])} | {a[:, 2].mean():.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.workdir, "table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump({k: [list(v) for v in vs] for k, vs in rows.items()}, f, indent=1)


if __name__ == "__main__":
    main()
