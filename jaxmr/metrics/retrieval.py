"""Cross-modal retrieval metrics: ranks, R@K, median/mean rank, im2recipe and SCAN/NCR protocols.

Host-side numpy. Ranks are 1-based: rank 1 means the right item scored highest. Every
ranker works on row blocks of the similarity matrix, so at most
``max(max_block_elements, n_keys)`` similarities exist at once, whatever the number of
queries (a 5K x 25K or 10K x 10K evaluation never materialises its full matrix).

**Ties** are broken pessimistically: an item scoring *equal* to the right one counts as
ranked above it. A collapsed model (every embedding the same) therefore gets rank N, not
rank 1; optimistic tie-breaking would hand it perfect recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_MAX_BLOCK_ELEMENTS = 1 << 24  # 16M float32 similarities = 64 MiB per block


def _as_2d(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} (shape {x.shape}) contains NaN or inf")
    return x


def l2_normalize(x: Any, *, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (rows of zeros stay zero), as float32.

    Args:
        x: ``[N, D]`` embeddings.
        eps: floor of the norm.

    Returns:
        ``[N, D]`` float32.
    """
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def _block_ranks(sims: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """1-based rank of the best positive per row of one similarity block.

    ``rank = 1 + #{j not in P : s_j >= max_{p in P} s_p}``: non-positives tying with the
    best positive count against it; other positives never do.
    """
    pos_scores = np.take_along_axis(sims, positives, axis=1)  # [b, P]
    best = pos_scores.max(axis=1, keepdims=True)  # [b, 1]
    at_least_best = (sims >= best).sum(axis=1)
    # Positives are distinct keys (checked by _check_positives), so this removes each
    # positive counted in at_least_best exactly once.
    positives_at_least_best = (pos_scores >= best).sum(axis=1)
    return 1 + at_least_best - positives_at_least_best


def _check_positives(positives: Any, n_queries: int, n_keys: int) -> np.ndarray:
    positives = np.asarray(positives)
    if positives.ndim == 1:
        positives = positives[:, None]
    if positives.ndim != 2 or positives.shape[0] != n_queries:
        raise ValueError(
            f"positives must be [n_queries] or [n_queries, P] with n_queries={n_queries}, "
            f"got shape {positives.shape}"
        )
    if not np.issubdtype(positives.dtype, np.integer):
        raise ValueError(f"positives must hold integer key indices, got dtype {positives.dtype}")
    if positives.size and (positives.min() < 0 or positives.max() >= n_keys):
        raise ValueError(f"positives must index keys in [0, {n_keys}), got values out of range")
    srt = np.sort(positives, axis=1)
    if positives.shape[1] > 1 and np.any(srt[:, 1:] == srt[:, :-1]):
        raise ValueError("a row of positives lists the same key twice")
    return positives


def _rows_per_block(n_keys: int, max_block_elements: int) -> int:
    return max(1, max_block_elements // max(n_keys, 1))


def ranks_from_similarity(
    sims: Any, positives: Any, *, max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS
) -> np.ndarray:
    """Rank of the best positive key for every query row of a similarity matrix.

    Args:
        sims: ``[n_queries, n_keys]`` similarities (higher is better); may be a
            ``np.memmap``: it is read one row block at a time.
        positives: ``[n_queries]`` index of each query's positive key, or
            ``[n_queries, P]`` indices of P positives (the best-ranked one counts).
        max_block_elements: similarities handled per block.

    Returns:
        ``[n_queries]`` int64 ranks in ``[1, n_keys - P + 1]``.
    """
    if not hasattr(sims, "shape"):
        sims = np.asarray(sims)
    if len(sims.shape) != 2:
        raise ValueError(f"sims must be 2-D [n_queries, n_keys], got shape {sims.shape}")
    nq, nk = sims.shape
    positives = _check_positives(positives, nq, nk)
    step = _rows_per_block(nk, max_block_elements)
    out = np.empty(nq, np.int64)
    for s in range(0, nq, step):
        block = np.asarray(sims[s : s + step])
        if not np.all(np.isfinite(block)):
            raise ValueError(f"sims rows [{s}, {s + len(block)}) contain NaN or inf")
        out[s : s + step] = _block_ranks(block, positives[s : s + step])
    return out


def retrieval_ranks(
    queries: Any,
    keys: Any,
    positives: Any,
    *,
    similarity: str = "cosine",
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> np.ndarray:
    """Chunked ranker over embeddings: rank of each query's best positive among all keys.

    Computes ``queries[block] @ keys.T`` one row block at a time (float32), so memory is
    ``max(max_block_elements, n_keys)`` similarities plus the inputs.

    Args:
        queries: ``[n_queries, D]`` embeddings.
        keys: ``[n_keys, D]`` embeddings.
        positives: ``[n_queries]`` or ``[n_queries, P]`` key indices (see
            :func:`ranks_from_similarity`).
        similarity: ``"cosine"`` (rows L2-normalised first) or ``"dot"``.
        max_block_elements: similarities per block.

    Returns:
        ``[n_queries]`` int64 1-based ranks.
    """
    q = _as_2d(queries, "queries")
    k = _as_2d(keys, "keys")
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"queries {q.shape} and keys {k.shape} differ in embedding size")
    if similarity == "cosine":
        q, k = l2_normalize(q), l2_normalize(k)
    elif similarity == "dot":
        q, k = q.astype(np.float32), k.astype(np.float32)
    else:
        raise ValueError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
    positives = _check_positives(positives, len(q), len(k))
    step = _rows_per_block(len(k), max_block_elements)
    kt = np.ascontiguousarray(k.T)
    out = np.empty(len(q), np.int64)
    for s in range(0, len(q), step):
        out[s : s + step] = _block_ranks(q[s : s + step] @ kt, positives[s : s + step])
    return out


def recall_at_k(ranks: Any, k: int) -> float:
    """R@K in percent: share of queries whose right item is within the top ``k``.

    Args:
        ranks: ``[N]`` 1-based ranks.
        k: cut-off.

    Returns:
        ``100 * mean(ranks <= k)``.
    """
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("recall_at_k needs at least one rank")
    return float(100.0 * np.mean(ranks <= k))


def median_rank(ranks: Any) -> float:
    """Median of the 1-based ranks (``np.median``: halves are kept for even N).

    SCAN-style reports floor this (``np.floor(np.median(ranks))``); im2recipe averages
    the unfloored medians over bags. Both protocols below follow their reference.
    """
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("median_rank needs at least one rank")
    return float(np.median(ranks))


def mean_rank(ranks: Any) -> float:
    """Mean of the 1-based ranks."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("mean_rank needs at least one rank")
    return float(np.mean(ranks))


def _summary(ranks: np.ndarray, prefix: str, ks: tuple[int, ...]) -> dict[str, float]:
    out = {f"{prefix}/R@{k}": recall_at_k(ranks, k) for k in ks}
    out[f"{prefix}/medR"] = median_rank(ranks)
    return out


def im2recipe_protocol(
    img_emb: Any,
    rec_emb: Any,
    *,
    bag_size: int = 1000,
    n_bags: int = 10,
    seed: int = 0,
    ks: tuple[int, ...] = (1, 5, 10),
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> dict[str, float]:
    """The im2recipe retrieval protocol of Recipe1M (1k or 10k setting).

    For each of ``n_bags`` bags, ``bag_size`` test pairs are drawn without replacement
    (bags independently, from one ``np.random.default_rng(seed)``); within the bag, image
    ``i`` must retrieve recipe ``i`` among the bag's recipes by cosine similarity
    (``i2r``) and recipe ``i`` must retrieve image ``i`` (``r2i``). Per bag the median rank
    and R@K are computed; the result is their mean over bags (medians are not floored,
    as in the im2recipe reference code).

    Args:
        img_emb: ``[N, D]`` image embeddings; row ``i`` pairs with ``rec_emb[i]``.
        rec_emb: ``[N, D]`` recipe embeddings.
        bag_size: pairs per bag (1000 or 10000 in the literature).
        n_bags: number of bags.
        seed: seed of the bag draws.
        ks: R@K cut-offs.
        max_block_elements: similarities per block (see :func:`retrieval_ranks`).

    Returns:
        dict with ``i2r/medR``, ``i2r/R@1``, ``i2r/R@5``, ``i2r/R@10``, the same for
        ``r2i`` (R@K in percent, averaged over bags), each also with a ``_std`` suffix
        (std over bags), plus ``bag_size`` and ``n_bags``.

    References:
        Salvador et al., "Learning Cross-modal Embeddings for Cooking Recipes and Food
        Images", CVPR 2017 (protocol and reference implementation ``rank()``).
    """
    img = _as_2d(img_emb, "img_emb")
    rec = _as_2d(rec_emb, "rec_emb")
    if img.shape[0] != rec.shape[0]:
        raise ValueError(f"img_emb {img.shape} and rec_emb {rec.shape} must pair row by row")
    if bag_size > img.shape[0] or bag_size < 1:
        raise ValueError(f"bag_size={bag_size} must be in [1, N={img.shape[0]}]")
    img, rec = l2_normalize(img), l2_normalize(rec)
    rng = np.random.default_rng(seed)
    per_bag: dict[str, list[float]] = {}
    diag = np.arange(bag_size)
    for _ in range(n_bags):
        idx = rng.choice(img.shape[0], size=bag_size, replace=False)
        i2r = retrieval_ranks(
            img[idx], rec[idx], diag, similarity="dot", max_block_elements=max_block_elements
        )
        r2i = retrieval_ranks(
            rec[idx], img[idx], diag, similarity="dot", max_block_elements=max_block_elements
        )
        for key, v in {**_summary(i2r, "i2r", ks), **_summary(r2i, "r2i", ks)}.items():
            per_bag.setdefault(key, []).append(v)
    out: dict[str, float] = {}
    for key, vals in per_bag.items():
        out[key] = float(np.mean(vals))
        out[key + "_std"] = float(np.std(vals))
    out["bag_size"] = float(bag_size)
    out["n_bags"] = float(n_bags)
    return out


def scan_rank_summary(i2t_ranks: Any, t2i_ranks: Any) -> dict[str, float]:
    """R@1/5/10, medR, meanR per direction and rSum, exactly as the SCAN/NCR code reports them.

    The published ``i2t``/``t2i`` compute 0-based ranks ``r`` and report
    ``R@K = 100 * mean(r < K)``, ``medR = floor(median(r)) + 1``, ``meanR = mean(r) + 1``;
    here ``r = ranks - 1`` and the same formulas are applied.

    Args:
        i2t_ranks: ``[N_img]`` 1-based rank of each image's best caption.
        t2i_ranks: ``[N_caps]`` 1-based rank of each caption's image.

    Returns:
        dict with ``i2t/R@1``, ``i2t/R@5``, ``i2t/R@10``, ``i2t/medR``, ``i2t/meanR``, the
        same for ``t2i``, and ``rsum`` (sum of the six recalls).
    """
    out: dict[str, float] = {}
    for name, ranks in (("i2t", i2t_ranks), ("t2i", t2i_ranks)):
        r = np.asarray(ranks) - 1  # the published 0-based ranks
        if r.size == 0:
            raise ValueError(f"{name}: needs at least one rank")
        for k in (1, 5, 10):
            out[f"{name}/R@{k}"] = float(100.0 * np.mean(r < k))
        out[f"{name}/medR"] = float(np.floor(np.median(r)) + 1)
        out[f"{name}/meanR"] = float(r.mean() + 1)
    out["rsum"] = float(sum(out[f"{d}/R@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))
    return out


def _fold_bounds(n_img: int, n_folds: int) -> list[tuple[int, int]]:
    if n_folds < 1 or n_img % n_folds:
        raise ValueError(
            f"n_folds={n_folds} must be >= 1 and divide the {n_img} images "
            "(COCO 1K: 5 folds of the 5,000 testall images)"
        )
    m = n_img // n_folds
    return [(f * m, (f + 1) * m) for f in range(n_folds)]


def _mean_over_folds(per_fold: list[dict[str, float]]) -> dict[str, float]:
    out = {k: float(np.mean([d[k] for d in per_fold])) for k in per_fold[0]}
    out["n_folds"] = float(len(per_fold))
    return out


def retrieval_metrics_from_similarity(
    sims: Any,
    *,
    captions_per_image: int = 5,
    n_folds: int = 1,
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> dict[str, float]:
    """SCAN/NCR image-text retrieval from a precomputed ``[N_img, N_caps]`` similarity matrix.

    For scorers that are not a cosine of two embeddings (SGR/SAF-like modules) and for the
    average of two co-trained networks' similarities (NCR evaluates ``(sims_A + sims_B) / 2``).
    Caption ``j`` belongs to image ``j // captions_per_image``. ``i2t``: rank of the best of
    an image's captions among all captions; ``t2i``: rank of a caption's image among all
    images. Ties count against the right item (see the module docstring).

    ``n_folds > 1`` is the COCO 1K protocol: fold ``f`` is the diagonal block of images
    ``[f m, (f + 1) m)`` and their captions (``m = N_img / n_folds``), each fold is scored
    alone, and every metric (medR and meanR included) is the mean over folds. ``n_folds=1``
    is the full protocol (F30K 1K test, COCO 5K, CC152K 1K with ``captions_per_image=1``).

    Args:
        sims: ``[N_img, N_img * captions_per_image]`` similarities, higher is better; may
            be a ``np.memmap`` (read in blocks).
        captions_per_image: 5 (F30K, COCO) or 1 (CC152K).
        n_folds: 1, or 5 for COCO 1K.
        max_block_elements: similarities handled per block.

    Returns:
        :func:`scan_rank_summary`'s dict (fold means when ``n_folds > 1``, plus ``n_folds``).
    """
    if not hasattr(sims, "shape"):
        sims = np.asarray(sims)
    if len(sims.shape) != 2:
        raise ValueError(f"sims must be 2-D [N_img, N_caps], got shape {sims.shape}")
    n_img, n_caps = sims.shape
    if n_caps != n_img * captions_per_image:
        raise ValueError(
            f"sims must be [N_img, N_img * captions_per_image] = [{n_img}, "
            f"{n_img} * {captions_per_image}], got {sims.shape}"
        )
    per_fold = []
    for i0, i1 in _fold_bounds(n_img, n_folds):
        block = sims[i0:i1, i0 * captions_per_image : i1 * captions_per_image]
        m = i1 - i0
        own = np.arange(m * captions_per_image).reshape(m, captions_per_image)
        i2t = ranks_from_similarity(block, own, max_block_elements=max_block_elements)
        t2i = ranks_from_similarity(
            block.T,
            np.arange(m * captions_per_image) // captions_per_image,
            max_block_elements=max_block_elements,
        )
        per_fold.append(scan_rank_summary(i2t, t2i))
    return per_fold[0] if n_folds == 1 else _mean_over_folds(per_fold)


def retrieval_metrics_multi_caption(
    img: Any,
    caps: Any,
    *,
    caps_per_image: int = 5,
    similarity: str = "cosine",
    n_folds: int = 1,
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> dict[str, float]:
    """SCAN-style image-text retrieval with several captions per image (Flickr30K, COCO).

    Caption ``j`` belongs to image ``j // caps_per_image``. Image-to-text (``i2t``): the
    rank of the best-ranked of an image's captions among all captions. Text-to-image
    (``t2i``): the rank of each caption's image among all images. Metrics as the published
    code computes them (:func:`scan_rank_summary`: ``medR = floor(median(r)) + 1`` on 0-based
    ranks ``r``; ``rSum`` the sum of the six recalls). ``n_folds=5`` is COCO 1K (mean over 5
    folds of 1,000 images, see :func:`retrieval_metrics_from_similarity`).

    Args:
        img: ``[N, D]`` image embeddings (one row per image).
        caps: ``[N * caps_per_image, D]`` caption embeddings, grouped by image.
        caps_per_image: captions per image (5 for Flickr30K and COCO, 1 for CC152K).
        similarity: ``"cosine"`` or ``"dot"``.
        n_folds: 1 (full set) or 5 (COCO 1K).
        max_block_elements: similarities per block (see :func:`retrieval_ranks`).

    Returns:
        dict with ``i2t/R@1``, ``i2t/R@5``, ``i2t/R@10``, ``i2t/medR``, ``i2t/meanR``, the
        same for ``t2i``, and ``rsum`` (and ``n_folds`` when ``n_folds > 1``).

    References:
        Lee et al., "Stacked Cross Attention for Image-Text Matching" (SCAN), ECCV 2018.
        Faghri et al., "VSE++: Improving Visual-Semantic Embeddings with Hard Negatives",
        BMVC 2018.
    """
    img = _as_2d(img, "img")
    caps = _as_2d(caps, "caps")
    n = img.shape[0]
    if caps.shape[0] != n * caps_per_image:
        raise ValueError(
            f"caps must have N * caps_per_image = {n} * {caps_per_image} rows, "
            f"got caps.shape={caps.shape} for img.shape={img.shape}"
        )
    per_fold = []
    for i0, i1 in _fold_bounds(n, n_folds):
        m = i1 - i0
        fi, fc = img[i0:i1], caps[i0 * caps_per_image : i1 * caps_per_image]
        own = np.arange(m * caps_per_image).reshape(m, caps_per_image)
        kw = {"similarity": similarity, "max_block_elements": max_block_elements}
        i2t = retrieval_ranks(fi, fc, own, **kw)
        t2i = retrieval_ranks(fc, fi, np.arange(m * caps_per_image) // caps_per_image, **kw)
        per_fold.append(scan_rank_summary(i2t, t2i))
    return per_fold[0] if n_folds == 1 else _mean_over_folds(per_fold)
