r"""Writes a draw of the published iVAE generator, by the published code itself, as `.npz`.

Calls `data.data.generate_data` of a checkout of github.com/ilkhem/iVAE with the arguments its
`SyntheticDataset` uses (`configs/ivae.yaml`: 40 segments x 1,000 points, d = D = 5, 3 xtanh
layers, Gaussian sources, one mixing matrix shared by every layer, one-hot segment labels), so
that jaxmr and the PyTorch reference check train on the published draws bit for bit:

  python scripts/published_ivae_data.py --ivae_repo=PATH/iVAE --seed=1 --out=pub_s1.npz
  python train.py --config=configs/ivae_synthetic.py:variant=ivae --workdir=runs/pub_s1 \
      --config.data.path=pub_s1.npz              # keys u (query), x (target), s (factors)
  python scripts/reference_ivae_check.py --npz=pub_s1.npz --npz_keys=u,x,s

The published module imports torch (for its Dataset classes), so run this with torch
installed, e.g. in the reference check's environment. Keys: s (sources), x (observations),
u (one-hot segment labels), as the published `save_data` writes them.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ivae_repo", required=True, help="a checkout of github.com/ilkhem/iVAE")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mixing_layers", type=int, default=3)
    p.add_argument("--dim", type=int, default=5, help="d = D")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not os.path.exists(os.path.join(args.ivae_repo, "data", "data.py")):
        raise SystemExit(f"{args.ivae_repo}: no data/data.py (not an iVAE checkout)")
    sys.path.insert(0, os.path.abspath(args.ivae_repo))
    from data.data import generate_data  # the published generator

    s, x, u, _, _ = generate_data(
        1000,
        40,
        args.dim,
        d_data=args.dim,
        n_layers=args.mixing_layers,
        prior="gauss",
        activation="xtanh",
        seed=args.seed,
        batch_size=0,
        uncentered=False,
        noisy=False,
        centers=None,
        repeat_linearity=True,
        one_hot_labels=False,  # one-hot below: the published helper needs numpy < 1.24
    )
    u = np.eye(40, dtype=np.float32)[np.asarray(u).astype(np.int64)]
    np.savez(args.out, s=s.astype(np.float32), x=x.astype(np.float32), u=u.astype(np.float32))
    print(f"{args.out}: s {s.shape}, x {x.shape}, u {u.shape}")


if __name__ == "__main__":
    main()
