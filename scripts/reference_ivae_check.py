r"""Fairness check of the explicit-decoder baseline: an independent PyTorch re-implementation of
the published iVAE training recipe (Khemakhem et al. 2020, `cleanIVAE` with `configs/ivae.yaml`
of github.com/ilkhem/iVAE), run on jaxmr's synthetic data or on data drawn the way the
published `SyntheticDataset` draws it.

Published recipe (read from the reference repository; re-written here, not copied):
- prior p(z|u) = N(0, diag exp(logl(u))); encoder mean g(x,u) and log-variance logv(x,u) are
  two separate MLPs; decoder f(z) with fixed variance 0.1; every MLP has 3 layers, 100 hidden
  units, xtanh (slope 0.1), PyTorch default initialisation;
- objective: the beta-TC decomposition of the ELBO with minibatch-weighted sampling,
      -(a log p(x|z) - b [log q(z|x,u) - log q(z)] - c [log q(z) - sum_i log q(z_i)]
        - d [sum_i log q(z_i) - log p(z|u)])
  with a = 100, b = 1, c = 0, d = 10 (a = b = c = d = 1 is the plain ELBO);
- Adam lr 0.01, ReduceLROnPlateau(factor 0.1, patience 0) on the epoch's mean loss, batch 64,
  20 epochs; one-hot segment labels as u.

Data: `--data=jaxmr` uses `jaxmr.data.synthetic.make_synthetic` (query `--query=onehot|observed`);
`--data=published` is the same generator with `repeat_linearity=True`, as the published
`SyntheticDataset` draws it (the SAME mixing matrix in every layer; jaxmr's default draws a new
one per layer). The JAX models see exactly these arrays with `--config.data.repeat_linearity=True
--config.data.query_kind=onehot` (the study's `--benchmark=published`).

  python scripts/reference_ivae_check.py --data=jaxmr --seeds=0,1,2
  python scripts/reference_ivae_check.py --data=published --seeds=0,1,2
  python scripts/reference_ivae_check.py --data=jaxmr --abcd=1,1,1,1 --lr=0.001  # plain ELBO
  python scripts/reference_ivae_check.py --npz=runs/draws/data/synthetic_L3_d5_D5_ds2.npz

`--npz` reads the arrays x (query u), y (target) and s (true factors) from a file, e.g. those
`scripts/identifiability_study.py --export_npz` writes: the very arrays the JAX models train
on (jaxmr's `ivae`, with its default `loss.elbo="beta_tc"`, optimises the same objective).

Needs `torch` (not a jaxmr dependency). Prints per seed the strong MCC (Pearson) of the
encoder mean and of one sample z ~ q(z|x,u) per point (what the published code's training
log reports, per batch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxmr.data.synthetic import (  # noqa: E402
    SyntheticSpec,
    make_synthetic,
)
from jaxmr.metrics.mcc import mean_corr_coef  # noqa: E402


def run(
    data,
    *,
    seed,
    abcd,
    lr,
    epochs,
    batch,
    hidden,
    layers,
    dec_var,
    plateau,
    torch,
    anneal=False,
    verbose=False,
    net_act="xtanh",
    patience=0,
):
    nn = torch.nn
    torch.manual_seed(seed)
    np.random.seed(seed)

    def xtanh(t):
        if net_act == "lrelu":
            return torch.nn.functional.leaky_relu(t, 0.1)
        return torch.tanh(t) + 0.1 * t

    class MLP(nn.Module):
        def __init__(self, i, o):
            super().__init__()
            dims = [i] + [hidden] * (layers - 1) + [o]
            self.fc = nn.ModuleList(
                nn.Linear(p, q) for p, q in zip(dims[:-1], dims[1:], strict=True)
            )

        def forward(self, h):
            for k, lin in enumerate(self.fc):
                h = lin(h)
                if k < len(self.fc) - 1:
                    h = xtanh(h)
            return h

    y = torch.from_numpy(data["y"])
    u = torch.from_numpy(data["x"])
    n, dy = y.shape
    du, d = u.shape[1], data["s"].shape[1]
    logl, f, g, logv = MLP(du, d), MLP(d, dy), MLP(dy + du, d), MLP(dy + du, d)
    params = [p for mod in (logl, f, g, logv) for p in mod.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=patience)
    a, b, c, dd = abcd
    steps_per_epoch = n // batch
    max_iter = epochs * steps_per_epoch
    thr = int(max_iter / 1.6)
    it = 0
    log2pi = float(np.log(2 * np.pi))

    def log_normal(x, mu, var):
        return -0.5 * (log2pi + torch.log(var) + (x - mu) ** 2 / var)

    for epoch in range(epochs):
        perm = torch.randperm(n)
        total, count = 0.0, 0
        for i in range(0, n - batch + 1, batch):
            idx = perm[i : i + batch]
            it += 1
            if anneal:  # the reference `iVAE.anneal` schedule, then the plain ELBO
                a0 = 0.5 / dec_var
                if it <= thr:
                    a = min(2 * a0, a0 + a0 * it / thr)
                    b = max(1.0, a0 * 0.3 * (1 - it / thr))
                    c = min(1.0, it / thr)
                    dd = max(1.0, a0 * 0.5 * (1 - it / thr))
                else:
                    a = b = c = dd = 1.0
            yb, ub = y[idx], u[idx]
            yu = torch.cat([yb, ub], 1)
            mu, var = g(yu), torch.exp(logv(yu))
            z = mu + torch.randn_like(mu) * var.sqrt()
            prior_var = torch.exp(logl(ub))
            logpx = log_normal(yb, f(z), torch.full_like(yb, dec_var)).sum(-1)
            logq_cond = log_normal(z, mu, var).sum(-1)
            logp = log_normal(z, torch.zeros_like(z), prior_var).sum(-1)
            m = z.shape[0]
            pair = log_normal(z[:, None, :], mu[None], var[None])  # [M, M, d]
            logq = torch.logsumexp(pair.sum(-1), 1) - np.log(m * n)
            logq_i = (torch.logsumexp(pair, 1) - np.log(m * n)).sum(-1)
            loss = -(
                a * logpx - b * (logq_cond - logq) - c * (logq - logq_i) - dd * (logq_i - logp)
            ).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item(), count + 1
        if plateau:
            sched.step(total / count)
        with torch.no_grad():
            zmean = g(torch.cat([y, u], 1)).numpy()
        ok = bool(np.all(np.isfinite(zmean)))
        mcc = float(mean_corr_coef(data["s"], zmean)) if ok else float("nan")
        if verbose:
            lr_now = opt.param_groups[0]["lr"]
            print(f"  epoch {epoch + 1}: loss {total / count:.3f}  lr {lr_now:g}  MCC {mcc:.4f}")
        if not ok:
            break
    with torch.no_grad():
        yu = torch.cat([y, u], 1)
        mu, std = g(yu), torch.exp(0.5 * logv(yu))
        zs = (mu + torch.randn_like(mu) * std).numpy()
    ok = bool(np.all(np.isfinite(zs)))
    sampled = float(mean_corr_coef(data["s"], zs)) if ok else float("nan")
    return mcc, sampled


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", choices=("jaxmr", "published"), default="jaxmr")
    p.add_argument("--npz", default="", help="arrays from this file (overrides --data)")
    p.add_argument(
        "--npz_keys",
        default="x,y,s",
        help="the --npz keys of query, target, factors (published draws: u,x,s)",
    )
    p.add_argument("--query", choices=("onehot", "observed"), default="onehot")
    p.add_argument("--mixing_layers", type=int, default=3)
    p.add_argument("--activation", default="xtanh")
    p.add_argument("--latent_dim", type=int, default=5)
    p.add_argument("--target_dim", type=int, default=5)
    p.add_argument("--data_seed", type=int, default=1)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--abcd", default="100,1,0,10", help="weights a,b,c,d (1,1,1,1: plain ELBO)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--dec_var", type=float, default=0.1)
    p.add_argument("--no_plateau", action="store_true")
    p.add_argument("--anneal", action="store_true", help="reference annealing of a,b,c,d")
    p.add_argument("--net_act", choices=("xtanh", "lrelu"), default="xtanh")
    p.add_argument("--patience", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="", help="append a JSON line with the results here")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.npz:
        keys = args.npz_keys.split(",")
        with np.load(args.npz) as f:
            missing = set(keys) - set(f.files)
            if len(keys) != 3 or missing:
                raise SystemExit(
                    f"{args.npz}: --npz_keys={args.npz_keys} needs 3 keys, missing "
                    f"{sorted(missing)} (the file has {f.files})"
                )
            data = {k: np.asarray(f[key], np.float32) for k, key in zip("xys", keys, strict=True)}
    else:
        spec = SyntheticSpec(
            latent_dim=args.latent_dim,
            target_dim=args.target_dim,
            mixing_layers=args.mixing_layers,
            activation=args.activation,
            query_kind=args.query,
            seed=args.data_seed,
            repeat_linearity=args.data == "published",
        )
        data = make_synthetic(spec)
    abcd = tuple(float(v) for v in args.abcd.split(","))
    scores, sampled_scores = [], []
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.perf_counter()
        mcc, sampled = run(
            data,
            seed=seed,
            abcd=abcd,
            lr=args.lr,
            epochs=args.epochs,
            batch=args.batch,
            hidden=args.hidden,
            layers=args.layers,
            dec_var=args.dec_var,
            plateau=not args.no_plateau,
            torch=torch,
            verbose=args.verbose,
            anneal=args.anneal,
            net_act=args.net_act,
            patience=args.patience,
        )
        scores.append(mcc)
        sampled_scores.append(sampled)
        print(
            f"seed {seed}: strong MCC {mcc:.4f} (encoder mean)  {sampled:.4f} (sampled z)  "
            f"({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    print(
        f"mean {np.mean(scores):.4f} ± {np.std(scores):.4f} (encoder mean), "
        f"{np.mean(sampled_scores):.4f} ± {np.std(sampled_scores):.4f} (sampled)  args {vars(args)}"
    )
    if args.out:
        with open(args.out, "a") as fh:
            row = {"args": vars(args), "mcc": scores, "mcc_sampled": sampled_scores}
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
