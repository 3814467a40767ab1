"""Evaluators of retrieval tasks: the published protocol on dev/test, and (with known factors)
semantic recall, leakage of exclusive factors into the embedding, and MCC/DCI of the embedding
against the shared factors; the clean/noisy split quality on the training pairs."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmr.losses.contrastive import directional_soft_targets, soft_correspondence_targets
from jaxmr.metrics.dci import dci_scores
from jaxmr.metrics.factor_probe import heldout_mlp_r2, heldout_r2
from jaxmr.metrics.mcc import mean_corr_coef
from jaxmr.metrics.retrieval import retrieval_metrics_from_similarity
from jaxmr.metrics.semantic_recall import semantic_recall
from jaxmr.metrics.split import split_quality
from jaxmr.tasks.retrieval.nets import mean_similarity
from jaxmr.tasks.retrieval.split import split_from_losses, training_pair_losses
from jaxmr.train.evaluators import predict_arrays
from jaxmr.train.task import Evaluator
from jaxmr.viz.retrieval import (
    plot_clean_probability,
    plot_code_embeddings,
    plot_metric_over_training,
    plot_soft_targets,
)


class RetrievalEvaluator(Evaluator):
    """R@1/5/10 both ways, medR, meanR and rSum on a split, similarities averaged over the
    networks (NCR's co-teaching evaluation). `n_folds=5` gives COCO 1K; `five_k` adds the
    whole split (COCO 5K) when folds are used."""

    def __init__(self, name, nets, split, *, every_steps: int, n_folds: int = 1):
        self.name, self.every_steps = name, every_steps
        self.nets, self.split, self.n_folds = nets, split, n_folds

    def similarity(self, params) -> tuple[np.ndarray, dict, dict]:
        imgs, txts = self.nets.embed(params, self.split)
        return mean_similarity(imgs, txts), imgs, txts

    def _protocol(self, sims) -> dict[str, float]:
        cpi = self.split.captions_per_image
        out = retrieval_metrics_from_similarity(sims, captions_per_image=cpi, n_folds=self.n_folds)
        res = {k: float(v) for k, v in out.items() if k != "n_folds"}
        if self.n_folds > 1:
            full = retrieval_metrics_from_similarity(sims, captions_per_image=cpi, n_folds=1)
            res.update({f"5k/{k}": float(v) for k, v in full.items() if k != "n_folds"})
        return res

    def run(self, params) -> dict[str, float]:
        return self._protocol(self.similarity(params)[0])


class FactorEvaluator(RetrievalEvaluator):
    """The protocol plus what ground-truth factors allow (the offline benchmark):

    - semantic recall (`i2t/sR@K`, `t2i/sR@K`, `srsum`): a hit is any item with the same
      shared factors (real many-to-many positives);
    - leakage: held-out R² of each exclusive factor predicted from the embedding
      (`leak/image/<factor>`, `leak/text/<factor>`, means `leak/image_mean`, `leak/text_mean`),
      and of the shared factors (`shared_r2/*`) for scale;
    - MCC and DCI of the image embedding against the shared factors.
    The first network's codes are probed (co-teaching nets are two draws of one model).
    """

    def __init__(self, name, nets, split, factors, *, every_steps: int, seed: int = 0):
        super().__init__(name, nets, split, every_steps=every_steps)
        self.factors, self.seed = factors, seed

    def run(self, params) -> dict[str, float]:
        sims, imgs, txts = self.similarity(params)
        out = self._protocol(sims)
        f = self.factors
        cpi = self.split.captions_per_image
        shared = np.asarray(f["shared"])
        cap_shared = np.repeat(shared, cpi, axis=0)
        out.update(semantic_recall(sims, shared, cap_shared))
        net = self.nets.names[0]
        img, txt = np.asarray(imgs[net]), np.asarray(txts[net])
        img_r2 = heldout_r2(img, f["image_exclusive"], seed=self.seed)
        txt_r2 = heldout_r2(txt, f["text_exclusive"], categorical=True, seed=self.seed)
        for r2, names, side in (
            (img_r2, f["image_exclusive_names"], "image"),
            (txt_r2, f["text_exclusive_names"], "text"),
        ):
            out.update({f"leak/{side}/{n}": float(v) for n, v in zip(names, r2, strict=True)})
            out[f"leak/{side}_mean"] = float(np.mean(r2))
            out[f"leak/{side}_max"] = float(np.max(r2))
        sh_r2 = heldout_r2(img, shared, categorical=True, seed=self.seed)
        out.update(
            {f"shared_r2/{n}": float(v) for n, v in zip(f["shared_names"], sh_r2, strict=True)}
        )
        out["shared_r2_mean"] = float(np.mean(sh_r2))
        out["mcc_shared"] = float(mean_corr_coef(shared.astype(np.float64), img))
        dci = dci_scores(shared.astype(np.float64), img, seed=self.seed)
        out.update({f"dci/{k}": float(v) for k, v in dci.items() if np.ndim(v) == 0})
        return out


class SplitEvaluator(Evaluator):
    """Clean/noisy split quality on the training pairs against the injected truth: each net's
    per-sample losses -> GMM (as the epoch hook does) -> AUC, precision, recall, F1."""

    def __init__(self, name, nets, data, loss_cfg, *, batch_size: int, every_steps: int = 0):
        self.name, self.every_steps = name, every_steps
        self.nets, self.data, self.loss_cfg, self.batch_size = nets, data, loss_cfg, batch_size
        self.last_probs: dict[str, np.ndarray] = {}

    def run(self, params) -> dict[str, float]:
        losses = training_pair_losses(
            self.nets,
            params,
            self.data,
            batch_size=self.batch_size,
            margin=float(self.loss_cfg.margin),
            seed=12345,
        )
        out = {}
        truth = ~self.data.pairing.is_noisy
        for net, loss in losses.items():
            prob, pred, _ = split_from_losses(loss, p_threshold=float(self.loss_cfg.p_threshold))
            self.last_probs[net] = prob
            q = split_quality(truth, clean_prob=prob, predicted_clean=pred)
            out.update({f"{net}/{k}": float(v) for k, v in q.items()})
        return out

    def evaluate(self, params, out_dir: str) -> tuple[dict[str, Any], list[str]]:
        metrics = {f"{self.name}/{k}": v for k, v in self.run(params).items()}
        path = os.path.join(out_dir, "clean_probability.npz")
        np.savez(path, is_noisy=self.data.pairing.is_noisy, **self.last_probs)
        figures = []
        if self.data.pairing.is_noisy.any():
            figures.append(
                plot_clean_probability(
                    self.last_probs,
                    self.data.pairing.is_noisy,
                    os.path.join(out_dir, "clean_probability.png"),
                )
            )
        with open(os.path.join(out_dir, "noise.json"), "w") as f:
            json.dump(
                {
                    "noise_file": self.data.noise_file,
                    "convention": self.data.pairing.convention,
                    "realised_ratio": self.data.pairing.realised_ratio,
                },
                f,
            )
        return metrics, figures


def heldout_gaussian_mi(a: np.ndarray, b: np.ndarray, *, seed: int = 0) -> float:
    """Held-out linear-Gaussian estimate of I(a; b) in nats: -1/2 sum_j log(1 - R^2_j) with
    R^2_j of b_j predicted from a by ridge regression on a held-out half (`heldout_r2`),
    negative R^2 counted as 0. Exact for jointly Gaussian codes with b's dimensions
    conditionally independent given a; a lower estimate otherwise (only linear dependence)."""
    r2 = np.clip(heldout_r2(a, b, seed=seed), 0.0, 0.999)
    return float(-0.5 * np.sum(np.log1p(-r2)))


def heldout_mlp_mi(a: np.ndarray, b: np.ndarray, *, seed: int = 0) -> float:
    """`heldout_gaussian_mi` that also sees nonlinear dependence: -1/2 sum_j log(1 - R^2_j),
    with R^2_j the larger of b_j's held-out R^2 from a by ridge regression (`heldout_r2`) and
    by a one-hidden-layer MLP (`heldout_mlp_r2`), same row split. Never below the linear
    estimate; still a lower estimate, since an MLP fitted on a few hundred rows finds only
    strong nonlinear dependence. It matters where a code is linearly decorrelated from the
    other by construction (`model.mii_decorrelation="exclusive"`, DisNCL's default, or
    `model.mei_decorrelation`), which zeroes the linear estimate."""
    r2 = np.maximum(heldout_r2(a, b, seed=seed), heldout_mlp_r2(a, b, seed=seed))
    r2 = np.clip(r2, 0.0, 0.999)
    return float(-0.5 * np.sum(np.log1p(-r2)))


def neighbour_precision(
    s_image: np.ndarray,
    s_text: np.ndarray,
    shared: np.ndarray,
    *,
    batch_size: int = 128,
    batches: int = 50,
    seed: int = 0,
) -> dict[str, float]:
    """How often an intra-modal nearest neighbour is a true many-to-many positive.

    Over `batches` random batches of `batch_size` pairs (image i with caption i), pair i's
    nearest other pair by the image codes' affinities, by the caption codes', and by their mean
    (the soft targets' `joint` form) is a true positive when all its shared factors equal pair
    i's; the precision counts the rows that have a positive in the batch. `positive_rows` is
    the share of rows that have one. What soft targets can gain depends on these numbers
    (docs/disncl.md, "Matching and the soft many-to-many targets")."""
    rng = np.random.default_rng(seed)
    n = len(s_image)
    size = min(batch_size, n)
    hits = {"image": [], "text": [], "joint": []}
    rows = []
    for _ in range(batches):
        idx = rng.choice(n, size, replace=False)
        pos = np.all(shared[idx][:, None, :] == shared[idx][None, :, :], axis=-1)
        np.fill_diagonal(pos, False)
        has = pos.any(axis=1)
        rows.append(has.mean())
        a_v, a_t = s_image[idx] @ s_image[idx].T, s_text[idx] @ s_text[idx].T
        for key, a in (("image", a_v), ("text", a_t), ("joint", (a_v + a_t) / 2)):
            a = np.array(a, np.float64)
            np.fill_diagonal(a, -np.inf)
            nearest = a.argmax(axis=1)
            hits[key].append(pos[np.arange(size), nearest][has])
    out = {f"neighbour_precision/{k}": float(np.mean(np.concatenate(v))) for k, v in hits.items()}
    out["neighbour_precision/positive_rows"] = float(np.mean(rows))
    return out


class DisentangleEvaluator(Evaluator):
    """DisNCL's codes on a split with known factors: held-out MI between MII and MEI codes per
    modality (not the training estimator), and the leakage of exclusive and shared factors into
    the MEI codes (held-out R²)."""

    def __init__(
        self, name, nets, split, factors, loss_cfg, *, every_steps: int = 0, seed: int = 0
    ):
        self.name, self.every_steps = name, every_steps
        self.nets, self.split, self.factors, self.seed = nets, split, factors, seed
        self.loss_cfg = loss_cfg
        net = nets.names[0]

        def codes(params, batch):
            m = nets.bind(params, net)
            if "images" in batch:
                c = m.image_codes(batch["images"])
            else:
                c = m.text_codes(batch["tokens"], batch["lengths"])
            return {"s": c["s"], "x": c["x"]}

        self._codes = jax.jit(codes)

    def codes(self, params) -> tuple[dict, dict]:
        img = predict_arrays(self._codes, params, {"images": self.split.images}, batch_size=512)
        txt = predict_arrays(
            self._codes,
            params,
            {"tokens": self.split.tokens, "lengths": self.split.lengths},
            batch_size=512,
        )
        return img, txt

    def run(self, params) -> dict[str, float]:
        img, txt = self.codes(params)
        f, out = self.factors, {}
        cpi = self.split.captions_per_image
        for side, c in (("image", img), ("text", txt)):
            out[f"mi_mii_mei/{side}"] = heldout_gaussian_mi(c["s"], c["x"], seed=self.seed)
        out["mi_mii_mei"] = 0.5 * (out["mi_mii_mei/image"] + out["mi_mii_mei/text"])
        shared = np.asarray(f["shared"])
        out["mei_leak/image_exclusive_mean"] = float(
            np.mean(heldout_r2(img["x"], f["image_exclusive"], seed=self.seed))
        )
        out["mei_shared_r2/image_mean"] = float(
            np.mean(heldout_r2(img["x"], shared, categorical=True, seed=self.seed))
        )
        out.update(
            neighbour_precision(
                np.asarray(img["s"], np.float64),
                np.asarray(txt["s"], np.float64)[::cpi],
                shared,
                seed=self.seed,
            )
        )
        out["mei_shared_r2/text_mean"] = float(
            np.mean(
                heldout_r2(txt["x"], np.repeat(shared, cpi, 0), categorical=True, seed=self.seed)
            )
        )
        return out

    def evaluate(self, params, out_dir: str) -> tuple[dict[str, Any], list[str]]:
        """Metrics plus figures: PCA views of the image MII and MEI codes coloured by a shared
        factor (colour) and an exclusive one (background red); the soft targets of a batch of
        64 test pairs beside their true positives; the held-out MI over training."""
        metrics = {f"{self.name}/{k}": v for k, v in self.run(params).items()}
        img, txt = self.codes(params)
        # The nonlinear held-out estimate (an MLP fit: seconds, so not at every eval step).
        for side, c in (("image", img), ("text", txt)):
            mi = heldout_mlp_mi(np.asarray(c["s"]), np.asarray(c["x"]), seed=self.seed)
            metrics[f"{self.name}/mi_mii_mei_mlp/{side}"] = mi
        metrics[f"{self.name}/mi_mii_mei_mlp"] = 0.5 * (
            metrics[f"{self.name}/mi_mii_mei_mlp/image"]
            + metrics[f"{self.name}/mi_mii_mei_mlp/text"]
        )
        f = self.factors
        names = [str(n) for n in f["shared_names"]]
        ex_names = [str(n) for n in f["image_exclusive_names"]]
        ci = names.index("colour") if "colour" in names else 0
        colour = np.asarray(f["shared"])[:, ci]
        background = np.asarray(f["image_exclusive"])[:, 0]
        figures = [
            plot_code_embeddings(
                {"image MII": img["s"], "image MEI": img["x"]},
                {
                    f"shared: {names[ci]}": colour,
                    f"exclusive: {ex_names[0]}": background,
                },  # fmt: skip
                os.path.join(out_dir, "codes_pca.png"),
            )
        ]
        n = min(64, len(img["s"]))
        cpi = self.split.captions_per_image
        sv, st = img["s"][:n], txt["s"][: n * cpi : cpi]  # each image with its first caption
        args = (jnp.asarray(sv @ sv.T), jnp.asarray(st @ st.T), jnp.ones(n))
        kw = dict(
            neighbour_weight=float(self.loss_cfg.neighbour_weight),
            temperature=float(self.loss_cfg.target_temperature),
        )
        if str(self.loss_cfg.get("soft_form", "joint")) == "directional":
            # The image -> caption targets, rows scaled to 1 so the mass reads as a share.
            y = np.asarray(directional_soft_targets(*args, **kw, normalise=True)[0])
        else:
            gate = str(self.loss_cfg.neighbour_gate)
            y = np.asarray(soft_correspondence_targets(*args, **kw, gate=gate))
        shared = np.asarray(f["shared"])[:n]
        positives = np.all(shared[:, None, :] == shared[None, :, :], axis=-1).astype(float)
        figures.append(plot_soft_targets(y, positives, os.path.join(out_dir, "soft_targets.png")))
        metrics[f"{self.name}/soft_target_mass_on_true_positives"] = float(
            np.sum(y * positives) / n
        )
        log = os.path.join(out_dir, "..", "..", "metrics.jsonl")
        if not os.path.exists(log):
            log = os.path.join(out_dir, "..", "metrics.jsonl")
        if os.path.exists(log):
            with open(log) as fh:
                rows = [json.loads(r) for r in fh if r.strip()]
            keys = [f"{self.name}/mi_mii_mei/image", f"{self.name}/mi_mii_mei/text"]
            if any(k in r for r in rows for k in keys):
                figures.append(
                    plot_metric_over_training(
                        rows,
                        keys,
                        os.path.join(out_dir, "mi_over_training.png"),
                        ylabel="held-out MI(MII; MEI) [nats]",
                    )  # fmt: skip
                )
        return metrics, figures
