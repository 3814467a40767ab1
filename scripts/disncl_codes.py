r"""Where the exclusive factors sit in a trained DisNCL network's codes, on the test split.

For a run of `scripts/retrieval_study.py` (its run folder holds `result.json` with the config
argument and seed), restores the best-dev checkpoint and prints, per modality, for the
backbone code h, the MII code s and the MEI code x of network a:

  r2     held-out R² of each exclusive factor group predicted from the code (ridge probe,
         `jaxmr.metrics.factor_probe.heldout_r2`, as the study's leakage columns): scale-free,
         it reads a direction of any non-negligible size;
  share  the share of the code's total variance that the same factors explain (held-out R²
         of every code dimension from the factors, weighted by that dimension's variance):
         how *much* of the code is that content, which shrinks when a term only scales it.

Image groups: `background` (background_r/g/b), `all` (the 18 image-exclusive factors);
text groups: `context` (the context clause), `all` (the 7 text-exclusive factors).

  python scripts/disncl_codes.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def variance_share(codes: np.ndarray, factors: np.ndarray, categorical, seed: int) -> float:
    """Share of `codes`' total variance explained by `factors` on held-out rows."""
    from jaxmr.metrics.factor_probe import heldout_r2

    f = np.asarray(factors)
    cols = []
    for j in range(f.shape[1]):
        if categorical:
            levels = np.unique(f[:, j])
            cols.append((f[:, j][:, None] == levels[None, :]).astype(np.float64))
        else:
            cols.append(f[:, j : j + 1].astype(np.float64))
    design = np.concatenate(cols, axis=1)
    r2 = np.clip(heldout_r2(design, codes, seed=seed), 0.0, 1.0)
    var = codes.var(axis=0)
    return float(np.sum(r2 * var) / np.sum(var))


def analyse(run_dir: str, arg: str = "ablation=none", seed: int = 0) -> dict:
    import jax

    from configs import disncl_synthetic
    from jaxmr.metrics.factor_probe import heldout_r2
    from jaxmr.tasks import build_task
    from jaxmr.train.evaluators import predict_arrays
    from jaxmr.train.loop import restore_state

    path = os.path.join(run_dir, "result.json")
    if os.path.exists(path):
        with open(path) as f:
            row = json.load(f)
    else:  # a run still training: its best checkpoint so far, with the given argument
        row = {"arg": arg, "seed": seed}
    config = disncl_synthetic.get_config(row["arg"])
    config.seed = seed = int(row["seed"])
    task = build_task(config)
    _, state, step = restore_state(task, config, run_dir, checkpoint="best")
    data = task.info["data"]
    nets = task.info["nets"]
    from jaxmr.tasks.retrieval.nets import Nets

    n = Nets(config.model, data.train.images.shape[-1], data.vocab_size, nets, disentangled=True)
    model_params = state.params

    def img_fn(params, batch):
        c = n.bind(params, nets[0]).image_codes(batch["images"])
        return {k: c[k] for k in ("h", "s", "x")}

    def txt_fn(params, batch):
        c = n.bind(params, nets[0]).text_codes(batch["tokens"], batch["lengths"])
        return {k: c[k] for k in ("h", "s", "x")}

    test = data.test
    img = predict_arrays(jax.jit(img_fn), model_params, {"images": test.images}, batch_size=512)
    txt = predict_arrays(
        jax.jit(txt_fn),
        model_params,
        {"tokens": test.tokens, "lengths": test.lengths},
        batch_size=512,
    )
    f = data.factors["test"]
    ie, te = np.asarray(f["image_exclusive"]), np.asarray(f["text_exclusive"])
    inames = [str(v) for v in f["image_exclusive_names"]]
    tnames = [str(v) for v in f["text_exclusive_names"]]
    bg = [inames.index(k) for k in ("background_r", "background_g", "background_b")]
    ctx = [tnames.index("context")]
    out = {"run": run_dir, "step": int(step), "arg": row["arg"]}
    for code in ("h", "s", "x"):
        ci, ct = np.asarray(img[code], np.float64), np.asarray(txt[code], np.float64)
        out[f"image/{code}/r2_background"] = float(np.mean(heldout_r2(ci, ie[:, bg], seed=seed)))
        out[f"image/{code}/r2_all"] = float(np.mean(heldout_r2(ci, ie, seed=seed)))
        out[f"image/{code}/share_background"] = variance_share(ci, ie[:, bg], False, seed)
        out[f"image/{code}/share_all"] = variance_share(ci, ie, False, seed)
        r2t = heldout_r2(ct, te, categorical=True, seed=seed)
        out[f"text/{code}/r2_context"] = float(np.mean(r2t[ctx]))
        out[f"text/{code}/r2_all"] = float(np.mean(r2t))
        out[f"text/{code}/share_context"] = variance_share(ct, te[:, ctx], True, seed)
        out[f"text/{code}/share_all"] = variance_share(ct, te, True, seed)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of scripts/retrieval_study.py")
    p.add_argument("--arg", default="ablation=none", help="config argument without result.json")
    p.add_argument("--seed", type=int, default=0, help="model seed without result.json")
    args = p.parse_args(argv)
    for run in args.runs:
        res = analyse(run, args.arg, args.seed)
        print(f"{res['run']} ({res['arg']}, step {res['step']})")
        print("  modality  code  r2(group)  r2(all)  share(group)  share(all)")
        for mod, grp in (("image", "background"), ("text", "context")):
            for code in ("h", "s", "x"):
                k = f"{mod}/{code}"
                print(
                    f"  {mod:8s}  {code:4s}  {res[f'{k}/r2_{grp}']:9.3f}  "
                    f"{res[f'{k}/r2_all']:7.3f}  {res[f'{k}/share_{grp}']:12.3f}  "
                    f"{res[f'{k}/share_all']:10.3f}"
                )
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
