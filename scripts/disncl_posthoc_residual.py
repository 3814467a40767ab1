r"""Is the exact removal of the MEI code's span from the MII code limited by its fit or by the
codes? A post-hoc check on a trained DisNCL run, no retraining.

For each network of a `scripts/retrieval_study.py` run (best-dev checkpoint), takes the MII
head's pre-normalisation output u and the MEI code x, fits B = the least-squares regression
(with an intercept) of u on x in closed form on `--fit_items` training images and as many
training captions (per modality), and replaces the MII code by s' = L2(u - x B) on the test
split: the `model.mii_decorrelation="regress"` construction with B exact on the training
codes instead of tracked by Adam during training. Prints, for s (the run's own MII code) and
s', the test rSum (similarities averaged over the networks, as eval.py), semantic rSum, the
leakage of exclusive factors (held-out R² means, as eval.py's `test/leak/*_mean`) and the
held-out MI(MII; MEI) (as `test_codes/mi_mii_mei`). The s row reproduces eval.py's numbers.

`--exclusive_k=K[,K...]` adds rows `excl_K`: first the MEI code is made exclusive by removing
from it, by least squares, its K canonical variates most correlated with the partner's MII
code (CCA of x_m and s_partner over the first `--fit_items` annotated training pairs, noisy
ones included, as training sees them); then s' = L2(u - x~ B) with that exclusive x~. K = 0
is the plain s' row; K = the MEI width leaves x~ constant and s' = s.

  python scripts/disncl_posthoc_residual.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def closed_form_residual(u_fit, x_fit, u, x):
    """u - x B with B the least-squares coefficients (with an intercept) of u_fit on x_fit;
    the intercept is not subtracted (as `jaxmr.losses.linear_residual`)."""
    design = np.concatenate([x_fit, np.ones((x_fit.shape[0], 1))], axis=1)
    sol = np.linalg.lstsq(design, u_fit, rcond=None)[0]
    return u - x @ sol[:-1]


def canonical_directions(a, b, k, ridge=1e-3):
    """``[Ka, k]``: the k directions of a's columns whose projections are most correlated
    with linear functions of b (CCA with a small ridge on both covariances)."""

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c + ridge * np.trace(c) / c.shape[0] * np.eye(c.shape[0]))
        return v @ np.diag(w**-0.5) @ v.T

    ac, bc = a - a.mean(0), b - b.mean(0)
    n = a.shape[0]
    wa, wb = inv_sqrt(ac.T @ ac / n), inv_sqrt(bc.T @ bc / n)
    left, _, _ = np.linalg.svd(wa @ (ac.T @ bc / n) @ wb)
    return wa @ left[:, :k]


def remove_variates(x_fit, dirs, x):
    """x minus its least-squares prediction from the variates x @ dirs (fitted on x_fit)."""
    z_fit = x_fit @ dirs
    design = np.concatenate([z_fit, np.ones((z_fit.shape[0], 1))], axis=1)
    sol = np.linalg.lstsq(design, x_fit, rcond=None)[0]
    return x - (x @ dirs) @ sol[:-1]


def _l2(a):
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def analyse(run_dir: str, fit_items: int = 2000, exclusive_k=()) -> dict:
    import jax

    from configs import disncl_synthetic
    from jaxmr.metrics.factor_probe import heldout_r2
    from jaxmr.metrics.retrieval import retrieval_metrics_from_similarity
    from jaxmr.metrics.semantic_recall import semantic_recall
    from jaxmr.tasks import build_task
    from jaxmr.tasks.retrieval.evaluators import heldout_gaussian_mi
    from jaxmr.tasks.retrieval.nets import Nets
    from jaxmr.train.evaluators import predict_arrays
    from jaxmr.train.loop import restore_state

    with open(os.path.join(run_dir, "result.json")) as f:
        row = json.load(f)
    config = disncl_synthetic.get_config(row["arg"])
    config.seed = int(row["seed"])
    task = build_task(config)
    _, state, step = restore_state(task, config, run_dir, checkpoint="best")
    data, names = task.info["data"], task.info["nets"]
    dims = (data.train.images.shape[-1], data.vocab_size)
    nets = Nets(config.model, *dims, names, disentangled=True)

    def fns(net):
        def img_fn(params, batch):
            model = nets.bind(params, net)
            h = model.image(batch["images"])
            c = model.image_heads(h)
            return {"u": model.image_heads.mii(h), "x": c["x"], "s": c["s"]}

        def txt_fn(params, batch):
            model = nets.bind(params, net)
            h = model.text(batch["tokens"], batch["lengths"])
            c = model.text_heads(h)
            return {"u": model.text_heads.mii(h), "x": c["x"], "s": c["s"]}

        return jax.jit(img_fn), jax.jit(txt_fn)

    def codes(split, net, n=None, cap2img=None):
        img_fn, txt_fn = fns(net)
        sl = slice(None) if n is None else slice(0, n)
        images = split.images[sl] if cap2img is None else split.images[cap2img[sl]]
        img = predict_arrays(img_fn, state.params, {"images": images}, batch_size=512)
        txt = predict_arrays(
            txt_fn,
            state.params,
            {"tokens": split.tokens[sl], "lengths": split.lengths[sl]},
            batch_size=512,
        )
        as64 = lambda d: {k: np.asarray(v, np.float64) for k, v in d.items()}  # noqa: E731
        return as64(img), as64(txt)

    test = data.test
    f = data.factors["test"]
    cpi = test.captions_per_image
    shared = np.asarray(f["shared"])
    out = {"run": run_dir, "step": int(step), "arg": row["arg"]}
    keys = ["s", "s_prime"] + [f"excl_{k}" for k in exclusive_k]
    sims = dict.fromkeys(keys, 0.0)
    first = {}
    cap2img = np.asarray(data.pairing.noisy_cap2img)
    for net in names:
        # annotated training pairs (caption k with image noisy_cap2img[k])
        fit_img, fit_txt = codes(data.train, net, fit_items, cap2img=cap2img)
        img, txt = codes(test, net)
        sp_img = _l2(closed_form_residual(fit_img["u"], fit_img["x"], img["u"], img["x"]))
        sp_txt = _l2(closed_form_residual(fit_txt["u"], fit_txt["x"], txt["u"], txt["x"]))
        per = {"s": (img["s"], txt["s"]), "s_prime": (sp_img, sp_txt)}
        for k in exclusive_k:
            pair = []
            for own_fit, other_fit, own in ((fit_img, fit_txt, img), (fit_txt, fit_img, txt)):
                dirs = canonical_directions(own_fit["x"], other_fit["s"], k)
                xf = remove_variates(own_fit["x"], dirs, own_fit["x"])
                xt = remove_variates(own_fit["x"], dirs, own["x"])
                pair.append(_l2(closed_form_residual(own_fit["u"], xf, own["u"], xt)))
            per[f"excl_{k}"] = tuple(pair)
        for key in keys:
            sims[key] = sims[key] + per[key][0] @ per[key][1].T / len(names)
        if not first:
            first = {**per, "x": (img, txt)}
    img_x, txt_x = first["x"][0]["x"], first["x"][1]["x"]
    for key in keys:
        m = retrieval_metrics_from_similarity(sims[key], captions_per_image=cpi)
        sem = semantic_recall(sims[key], shared, np.repeat(shared, cpi, axis=0))
        ci, ct = first[key]
        out[f"{key}/rsum"] = float(m["rsum"])
        out[f"{key}/srsum"] = float(sem["srsum"])
        out[f"{key}/leak_image"] = float(
            np.mean(heldout_r2(ci, f["image_exclusive"], seed=config.seed))
        )
        out[f"{key}/leak_text"] = float(
            np.mean(heldout_r2(ct, f["text_exclusive"], categorical=True, seed=config.seed))
        )
        mi_i = heldout_gaussian_mi(ci, img_x, seed=config.seed)
        mi_t = heldout_gaussian_mi(ct, txt_x, seed=config.seed)
        out[f"{key}/mi_mii_mei"] = 0.5 * (mi_i + mi_t)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of scripts/retrieval_study.py")
    p.add_argument("--fit_items", type=int, default=2000, help="training items B is fitted on")
    p.add_argument("--exclusive_k", default="", help="comma list of canonical variates removed")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.exclusive_k.split(",") if k]
    for run in args.runs:
        res = analyse(run, args.fit_items, ks)
        print(f"{res['run']} ({res['arg']}, step {res['step']})")
        print("  code     rSum   semantic  leak image  leak text  MI(MII; MEI)")
        for key in ["s", "s_prime"] + [f"excl_{k}" for k in ks]:
            print(
                f"  {key:7s} {res[f'{key}/rsum']:6.1f}  {res[f'{key}/srsum']:8.1f}  "
                f"{res[f'{key}/leak_image']:10.3f}  {res[f'{key}/leak_text']:9.3f}  "
                f"{res[f'{key}/mi_mii_mei']:12.1f}"
            )
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
