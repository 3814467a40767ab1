"""The SCAN/NCR evaluation protocol against a brute-force port of the published loops.

``_published_i2t``/``_published_t2i`` follow NCR's evaluation.py (``i2t``/``t2i`` over a
similarity matrix ``[N_img, N_caps]``, 0-based ranks, ``medR = floor(median) + 1``,
``meanR = mean + 1``) and ``_published_fold5`` its COCO 5-fold loop (per-fold metrics, then
their mean). Random continuous similarities have no ties, where argsort's order and the
library's pessimistic tie rule would differ.
"""

import numpy as np
import pytest

from jaxmr.metrics.retrieval import (
    retrieval_metrics_from_similarity,
    retrieval_metrics_multi_caption,
    scan_rank_summary,
)


def _published_i2t(npts, sims, per_captions):
    ranks = np.zeros(npts)
    for index in range(npts):
        inds = np.argsort(sims[index])[::-1]
        rank = 1e20
        for i in range(per_captions * index, per_captions * index + per_captions, 1):
            tmp = np.where(inds == i)[0][0]
            if tmp < rank:
                rank = tmp
        ranks[index] = rank
    r1 = 100.0 * len(np.where(ranks < 1)[0]) / len(ranks)
    r5 = 100.0 * len(np.where(ranks < 5)[0]) / len(ranks)
    r10 = 100.0 * len(np.where(ranks < 10)[0]) / len(ranks)
    return r1, r5, r10, np.floor(np.median(ranks)) + 1, ranks.mean() + 1


def _published_t2i(npts, sims, per_captions):
    ranks = np.zeros(per_captions * npts)
    sims = sims.T
    for index in range(npts):
        for i in range(per_captions):
            inds = np.argsort(sims[per_captions * index + i])[::-1]
            ranks[per_captions * index + i] = np.where(inds == index)[0][0]
    r1 = 100.0 * len(np.where(ranks < 1)[0]) / len(ranks)
    r5 = 100.0 * len(np.where(ranks < 5)[0]) / len(ranks)
    r10 = 100.0 * len(np.where(ranks < 10)[0]) / len(ranks)
    return r1, r5, r10, np.floor(np.median(ranks)) + 1, ranks.mean() + 1


def _as_dict(r, ri):
    keys = ("R@1", "R@5", "R@10", "medR", "meanR")
    out = {f"i2t/{k}": v for k, v in zip(keys, r, strict=True)}
    out |= {f"t2i/{k}": v for k, v in zip(keys, ri, strict=True)}
    out["rsum"] = r[0] + r[1] + r[2] + ri[0] + ri[1] + ri[2]
    return out


def _published_full(sims, per_captions):
    n = sims.shape[0]
    return _as_dict(_published_i2t(n, sims, per_captions), _published_t2i(n, sims, per_captions))


def _published_fold5(sims, per_captions, fold_images):
    results = []
    for i in range(5):
        a, b = i * fold_images, (i + 1) * fold_images
        block = sims[a:b, a * per_captions : b * per_captions]
        d = _published_full(block, per_captions)
        results.append(d)
    return {k: np.mean([d[k] for d in results]) for k in results[0]}


def _sims(n_img, per_captions, seed, signal=1.5):
    """Similarities with some structure, so recalls are neither 0 nor 100."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n_img, n_img * per_captions))
    s[np.arange(n_img * per_captions) // per_captions, np.arange(n_img * per_captions)] += signal
    return s


def _check(got, want):
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-9), k


@pytest.mark.parametrize(("n_img", "cpi"), [(60, 5), (57, 5), (80, 1), (33, 1)])
def test_full_protocol_equals_published_loops(n_img, cpi):
    sims = _sims(n_img, cpi, seed=n_img)
    want = _published_full(sims, cpi)
    got = retrieval_metrics_from_similarity(sims, captions_per_image=cpi, max_block_elements=500)
    _check(got, want)
    assert 0 < got["i2t/R@1"] < 100 and got["t2i/medR"] > 1 and got["i2t/meanR"] > 1


def test_even_count_median_is_floored_like_the_published_code():
    # 0-based ranks [0, 1, 2, 3]: median 1.5 -> floor 1 -> medR 2 (not 2.5 or 3).
    sims = np.array([[4, 3, 2, 1], [1, 4, 3, 2], [1, 2, 4, 3], [2, 3, 1, 4]], float)
    got = scan_rank_summary(np.array([1, 2, 3, 4]), np.array([1, 1, 2, 4]))
    assert got["i2t/medR"] == 2.0 and got["i2t/meanR"] == 2.5
    assert got["t2i/medR"] == 1.0 and got["t2i/R@1"] == 50.0
    _check(retrieval_metrics_from_similarity(sims, captions_per_image=1), _published_full(sims, 1))


@pytest.mark.parametrize("cpi", [5, 1])
def test_five_fold_1k_equals_published_loop(cpi):
    fold_images = 40  # the published folds are 1,000 images; the loop is the same
    sims = _sims(5 * fold_images, cpi, seed=7 + cpi)
    want = _published_fold5(sims, cpi, fold_images)
    got = retrieval_metrics_from_similarity(sims, captions_per_image=cpi, n_folds=5)
    _check(got, want)
    assert got["n_folds"] == 5
    # 5K = the same matrix without folds, and harder than 1K.
    full = retrieval_metrics_from_similarity(sims, captions_per_image=cpi)
    _check(full, _published_full(sims, cpi))
    assert full["rsum"] < got["rsum"]


def test_embeddings_path_equals_similarity_path_and_co_training_average():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 8))
    img = z + 0.8 * rng.normal(size=z.shape)
    caps = np.repeat(z, 5, axis=0) + 0.9 * rng.normal(size=(250, 8))
    nrm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = nrm(img) @ nrm(caps).T
    for folds in (1, 5):
        a = retrieval_metrics_multi_caption(img, caps, n_folds=folds, max_block_elements=97)
        b = retrieval_metrics_from_similarity(sims, n_folds=folds)
        _check(a, b)
    # NCR evaluates the mean of two networks' similarity matrices.
    sims_b = sims + 0.3 * rng.normal(size=sims.shape)
    avg = (sims + sims_b) / 2
    _check(retrieval_metrics_from_similarity(avg), _published_full(avg, 5))


def test_memmap_similarities(tmp_path):
    sims = _sims(30, 5, seed=3).astype(np.float32)
    path = tmp_path / "sims.npy"
    np.save(path, sims)
    m = np.load(path, mmap_mode="r")
    _check(retrieval_metrics_from_similarity(m, max_block_elements=64), _published_full(sims, 5))


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\[N_img, N_img \* captions_per_image\]"):
        retrieval_metrics_from_similarity(np.zeros((4, 19)))
    with pytest.raises(ValueError, match="n_folds=5 must be >= 1 and divide the 12"):
        retrieval_metrics_from_similarity(np.zeros((12, 60)), n_folds=5)
