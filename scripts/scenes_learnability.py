"""Is the scenes benchmark learnable by the family's encoders, and does an "align everything"
model leak exclusive factors? A standalone check (not the trainer): clean pairs, symmetric
InfoNCE, RegionEncoder + GRUTextEncoder, Adam; then test-split R@K, semantic recall and the
held-out R² of shared and exclusive factors from the pooled codes.

    PYTHONPATH=$PWD python scripts/scenes_learnability.py --epochs 4
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxmr.data.scene_captions import tokenize_caption, vocab_json
from jaxmr.data.scenes import CAPS_PER_IMAGE, ensure_scenes, load_scene_factors
from jaxmr.losses.contrastive import symmetric_infonce_loss
from jaxmr.metrics.factor_probe import heldout_r2
from jaxmr.metrics.retrieval import retrieval_metrics_multi_caption
from jaxmr.metrics.semantic_recall import semantic_recall
from jaxmr.models.retrieval import GRUTextEncoder, RegionEncoder


def load_split(root: str, split: str, word2idx: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ims = np.load(f"{root}/scenes_precomp/{split}_ims.npy")
    with open(f"{root}/scenes_precomp/{split}_caps.txt") as f:
        caps = f.read().splitlines()
    # <start> caption <end>, as the family's loaders build the token ids.
    ids = [[1, *(word2idx.get(t, 3) for t in tokenize_caption(c)), 2] for c in caps]
    lengths = np.array([len(i) for i in ids], np.int32)
    tokens = np.zeros((len(ids), lengths.max()), np.int32)
    for row, i in enumerate(ids):
        tokens[row, : len(i)] = i
    return ims, tokens, lengths


class Model(nnx.Module):
    def __init__(self, feature_dim: int, vocab_size: int, dim: int, *, rngs: nnx.Rngs):
        self.img = RegionEncoder(feature_dim, dim, rngs=rngs)
        self.txt = GRUTextEncoder(vocab_size, dim, rngs=rngs)


def encode(model: Model, ims, tokens, lengths, batch: int = 500):
    f_img = nnx.jit(lambda m, x: m.img(x))
    f_txt = nnx.jit(lambda m, t, n: m.txt(t, n))
    img = np.concatenate([f_img(model, ims[i : i + batch]) for i in range(0, len(ims), batch)])
    txt = np.concatenate(
        [f_txt(model, tokens[i : i + batch], lengths[i : i + batch])
         for i in range(0, len(tokens), batch)]
    )  # fmt: skip
    return img, txt


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="default")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--cache", default="/tmp/jaxmr_scenes")
    args = p.parse_args()
    root = ensure_scenes(args.cache, size=args.size, seed=0)
    w2i = vocab_json()["word2idx"]
    tr_ims, tr_tok, tr_len = load_split(root, "train", w2i)
    te_ims, te_tok, te_len = load_split(root, "test", w2i)
    model = Model(tr_ims.shape[-1], len(w2i), args.dim, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, ims, tokens, lengths):
        def loss_fn(m):
            scores = m.img(ims) @ m.txt(tokens, lengths).T
            return jnp.mean(symmetric_infonce_loss(scores, temperature=args.temperature))

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    rng = np.random.default_rng(0)
    n_caps = len(tr_tok)
    for epoch in range(args.epochs):
        t0, order, losses = time.time(), rng.permutation(n_caps), []
        for s in range(n_caps // args.batch):
            idx = order[s * args.batch : (s + 1) * args.batch]
            losses.append(step(model, opt, tr_ims[idx // CAPS_PER_IMAGE], tr_tok[idx], tr_len[idx]))
        print(f"epoch {epoch}: loss {float(np.mean(losses)):.3f} ({time.time() - t0:.0f} s)",
              flush=True)  # fmt: skip

    img, txt = encode(model, te_ims, te_tok, te_len)
    m = retrieval_metrics_multi_caption(img, txt)
    f = load_scene_factors(root, "test")
    s = semantic_recall(img @ txt.T, f["shared"], np.repeat(f["shared"], 5, axis=0))
    print("test:", ", ".join(f"{k} {v:.1f}" for k, v in {**m, **s}.items()))
    r2 = heldout_r2(img, f["shared"], categorical=True)
    print("image code, shared R²:", dict(zip(f["shared_names"], np.round(r2, 3), strict=True)))
    r2 = heldout_r2(img, f["image_exclusive"])
    print("image code, exclusive R²:",
          dict(zip(f["image_exclusive_names"], np.round(r2, 3), strict=True)))  # fmt: skip
    r2 = heldout_r2(txt, f["text_exclusive"], categorical=True)
    print("caption code, exclusive R²:",
          dict(zip(f["text_exclusive_names"], np.round(r2, 3), strict=True)))  # fmt: skip
    r2 = heldout_r2(txt, np.repeat(f["shared"], 5, axis=0), categorical=True)
    print("caption code, shared R²:", dict(zip(f["shared_names"], np.round(r2, 3), strict=True)))


if __name__ == "__main__":
    jax.config.update("jax_platforms", "cpu")
    main()
