"""Does the scenes benchmark's exclusive content dominate the raw inputs? (docs/scenes.md)

Generates (or reuses) the benchmark and, on one split, compares what the nearest neighbours
of raw inputs share: images by cosine of mean-pooled region features, captions by cosine of
bag-of-words counts. Also prints held-out linear R² of each factor from the raw image
features, and the instance-level R@K ceiling of a perfect *semantic* model (one that knows
the shared factors exactly, ties broken at random).

    PYTHONPATH=$PWD python scripts/scenes_exclusive_check.py --size default --split test
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jaxmr.data.scene_captions import tokenize_caption, vocab_json
from jaxmr.data.scenes import CAPS_PER_IMAGE, ensure_scenes, load_scene_factors
from jaxmr.metrics.factor_probe import heldout_r2
from jaxmr.metrics.retrieval import l2_normalize, retrieval_metrics_multi_caption


def nearest_neighbours(x: np.ndarray) -> np.ndarray:
    x = l2_normalize(x)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return sims.argmax(axis=1)


def share_report(nn: np.ndarray, cols: np.ndarray, names, title: str) -> None:
    """Per factor: P(nearest neighbour has the same value) vs P(random other row does)."""
    print(f"\n{title}: factor, P(same | NN), P(same | random pair)")
    for j, name in enumerate(names):
        same_nn = np.mean(cols[nn, j] == cols[:, j])
        _, counts = np.unique(cols[:, j], return_counts=True)
        n = len(cols)
        chance = np.sum(counts * (counts - 1)) / (n * (n - 1))
        print(f"  {name:22s} {same_nn:6.3f}  {chance:6.3f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="default")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="/tmp/jaxmr_scenes")
    args = p.parse_args()
    t0 = time.time()
    root = ensure_scenes(args.cache, size=args.size, seed=args.seed)
    print(f"root {root} (ready in {time.time() - t0:.1f} s)")
    f = load_scene_factors(root, args.split)
    ims = np.load(f"{root}/scenes_precomp/{args.split}_ims.npy")
    shared, excl, text = f["shared"], f["image_exclusive"], f["text_exclusive"]
    combo = np.ravel_multi_index(shared.T, tuple(f["shared_cardinalities"]))

    pooled = ims.mean(axis=1)
    nn = nearest_neighbours(pooled)
    share_report(nn, np.column_stack([shared, combo]), [*f["shared_names"], "ALL shared"],
                 "images, raw mean-pooled region features")  # fmt: skip
    bg = excl[:, :3]
    rand = np.random.default_rng(0).permutation(len(bg))
    print(
        f"  background RGB distance: NN {np.linalg.norm(bg[nn] - bg, axis=1).mean():.3f}, "
        f"random pair {np.linalg.norm(bg[rand] - bg, axis=1).mean():.3f}"
    )

    r2_shared = heldout_r2(pooled, shared, categorical=True, seed=0)
    r2_excl = heldout_r2(pooled, excl, seed=0)
    print("\nheld-out ridge R² from raw mean-pooled features (half fit, half test)")
    for name, v in zip(f["shared_names"], r2_shared, strict=True):
        print(f"  shared    {name:22s} {v:6.3f}")
    for name, v in zip(f["image_exclusive_names"], r2_excl, strict=True):
        print(f"  exclusive {name:22s} {v:6.3f}")

    vocab = vocab_json()["word2idx"]
    with open(f"{root}/scenes_precomp/{args.split}_caps.txt") as fh:
        caps = fh.read().splitlines()
    bow = np.zeros((len(caps), len(vocab)), np.float32)
    for i, c in enumerate(caps):
        for tok in tokenize_caption(c):
            bow[i, vocab[tok]] += 1
    cap_shared = np.repeat(shared, CAPS_PER_IMAGE, axis=0)
    cap_combo = np.repeat(combo, CAPS_PER_IMAGE)
    nn_c = nearest_neighbours(bow)
    share_report(nn_c, np.column_stack([text, cap_shared, cap_combo]),
                 [*f["text_exclusive_names"], *f["shared_names"], "ALL shared"],
                 "captions, bag-of-words counts")  # fmt: skip

    onehot = np.eye(int(combo.max()) + 1, dtype=np.float32)
    noise = np.random.default_rng(1)
    img_o = onehot[combo] + 1e-3 * noise.standard_normal((len(combo), onehot.shape[1]))
    cap_o = onehot[cap_combo] + 1e-3 * noise.standard_normal((len(cap_combo), onehot.shape[1]))
    m = retrieval_metrics_multi_caption(img_o, cap_o)
    print("\ninstance-level ceiling of a perfect semantic model:")
    print("  " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()))
    others = np.bincount(combo)[combo] - 1
    print(f"  images sharing an image's shared factors: mean {others.mean():.2f}")


if __name__ == "__main__":
    main()
