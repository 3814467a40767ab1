"""Cross-modal contrastive losses: hinge triplets, symmetric InfoNCE, soft many-to-many targets.

Every loss takes a similarity matrix ``scores[i, j] = S(a_i, b_j)`` between the N items of one
modality (rows, e.g. images) and the N items of the other (columns, e.g. captions), with the
annotated pairs on the diagonal, and returns per-example losses ``[N]`` to be reduced (and
possibly weighted, e.g. by clean probabilities) by the caller. ``where`` is an optional ``[N]``
bool mask: a masked example is no one's negative, its loss is 0 and its gradient finite.

References:
  Faghri et al., VSE++: Improving Visual-Semantic Embeddings with Hard Negatives, BMVC 2018.
  Huang et al., Learning with Noisy Correspondence for Cross-modal Matching (NCR), NeurIPS 2021.
  Radford et al., Learning Transferable Visual Models From Natural Language Supervision, 2021.
  Dang et al., Disentangled Noisy Correspondence Learning, IEEE TIP 2025 (soft targets are a
  reconstruction, see docs/methods.md §2).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxmr.losses.masking import check_square as _check_square
from jaxmr.losses.masking import valid_mask as _valid
from jaxmr.losses.masking import zero_masked_pairs as _zero_masked


def _log_softmax_masked(logits: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
    """log_softmax over the entries with ``mask``; masked entries come back as 0, not -inf.

    A slice with no allowed entry keeps its diagonal so its logsumexp stays finite.
    """
    n = logits.shape[0]
    nonempty = jnp.any(mask, axis=axis, keepdims=True)
    mask = jnp.where(nonempty, mask, jnp.eye(n, dtype=bool))
    lse = jax.nn.logsumexp(jnp.where(mask, logits, -jnp.inf), axis=axis, keepdims=True)
    return jnp.where(mask, logits - lse, 0.0)


# ----------------------------------------------------------------------------- hinge triplets


def ncr_soft_margin(
    clean_prob: chex.Array, *, margin: float = 0.2, kind: str = "exponential"
) -> jax.Array:
    """Per-pair soft margins of NCR: confident-clean pairs keep the full margin.

    .. math::
        \\hat\\alpha_i = \\alpha \\cdot s(w_i), \\quad s(w) = \\begin{cases}
        w & \\text{linear} \\\\ (10^{w} - 1) / 9 & \\text{exponential} \\\\
        \\tfrac12 \\sin(\\pi w - \\tfrac{\\pi}{2}) + \\tfrac12 & \\text{sine} \\end{cases}

    Args:
      clean_prob: ``[N]`` clean probabilities (or rectified labels) w_i in [0, 1].
      margin: the base margin alpha.
      kind: ``"linear"``, ``"exponential"`` (NCR's default) or ``"sine"``.

    Returns:
      ``[N]`` margins, to pass as ``margin=`` to ``triplet_hinge_loss``.

    References:
      Huang et al., NeurIPS 2021, eq. (9) and their ``ContrastiveLoss``.
    """
    w = jnp.asarray(clean_prob)
    if kind == "linear":
        s = w
    elif kind == "exponential":
        s = (jnp.power(10.0, w) - 1.0) / 9.0
    elif kind == "sine":
        s = 0.5 * jnp.sin(jnp.pi * w - 0.5 * jnp.pi) + 0.5
    else:
        raise ValueError(f"kind must be 'linear', 'exponential' or 'sine', got {kind!r}")
    return margin * s


def triplet_hinge_loss(
    scores: chex.Array,
    *,
    margin: float | chex.Array = 0.2,
    hardest_negative: bool = True,
    where: chex.Array | None = None,
) -> jax.Array:
    """Per-example bidirectional hinge triplet loss (VSE++ with hardest negatives, or VSE0).

    .. math::
        \\ell_i = \\operatorname{agg}_{j \\ne i} [\\alpha_i + S_{ij} - S_{ii}]_+
               + \\operatorname{agg}_{j \\ne i} [\\alpha_i + S_{ji} - S_{ii}]_+

    with agg = max (hardest negative, VSE++) or the mean over the valid negatives. The first
    term ranks the row's captions for image i, the second the column's images for caption i.

    Args:
      scores: ``[N, N]`` similarities, annotated pairs on the diagonal.
      margin: scalar alpha, or ``[N]`` per-pair margins alpha_i (e.g. ``ncr_soft_margin``).
        NCR's reference code broadcasts a per-pair margin along columns (the negative's
        index); here alpha_i belongs to the anchor pair i, as in the NCR paper.
      hardest_negative: max over negatives if True, mean otherwise.
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``[N]`` per-example losses (0 where masked). With ``hardest_negative=False`` this is, up
      to the factor N/(N-1), NCR's per-sample loss for its GMM split.

    References:
      Faghri et al., BMVC 2018, eq. (5); Huang et al., NeurIPS 2021, eq. (8).
    """
    _check_square(scores)
    n = scores.shape[0]
    valid = _valid(n, where)
    scores = _zero_masked(scores, valid)
    alpha = jnp.broadcast_to(jnp.asarray(margin, dtype=scores.dtype), (n,))
    positive = jnp.diagonal(scores)
    negatives = valid[:, None] & valid[None, :] & ~jnp.eye(n, dtype=bool)
    # cost_row[i, j]: caption j ranked above caption i for image i; cost_col[j, i]: image j
    # ranked above image i for caption i (stored transposed so both aggregate along axis 1).
    cost_row = jax.nn.relu(alpha[:, None] + scores - positive[:, None])
    cost_col = jax.nn.relu(alpha[:, None] + scores.T - positive[:, None])
    # Hinge costs are >= 0, so zeroing non-negatives leaves max and sum correct.
    cost_row = jnp.where(negatives, cost_row, 0.0)
    cost_col = jnp.where(negatives, cost_col, 0.0)
    if hardest_negative:
        values = jnp.max(cost_row, axis=1) + jnp.max(cost_col, axis=1)
    else:
        count = jnp.maximum(jnp.sum(negatives, axis=1), 1)
        values = (jnp.sum(cost_row, axis=1) + jnp.sum(cost_col, axis=1)) / count
    return jnp.where(valid, values, 0.0)


# ----------------------------------------------------------------------------- InfoNCE / CLIP


def symmetric_infonce_loss(
    scores: chex.Array, *, temperature: float = 0.07, where: chex.Array | None = None
) -> jax.Array:
    """Per-example symmetric InfoNCE (CLIP) loss.

    .. math::
        \\ell_i = \\tfrac12 \\Big[-\\log \\frac{e^{S_{ii}/\\tau}}{\\sum_j e^{S_{ij}/\\tau}}
                 - \\log \\frac{e^{S_{ii}/\\tau}}{\\sum_j e^{S_{ji}/\\tau}}\\Big]

    Args:
      scores: ``[N, N]`` similarities, annotated pairs on the diagonal.
      temperature: tau > 0.
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``[N]`` per-example losses (0 where masked); equals ``soft_target_cross_entropy`` with
      identity targets.

    References:
      van den Oord et al., 2018; Radford et al., 2021, Figure 3.
    """
    _check_square(scores)
    valid = _valid(scores.shape[0], where)
    logits = _zero_masked(scores, valid) / temperature
    pairs = valid[:, None] & valid[None, :]
    row = jnp.diagonal(_log_softmax_masked(logits, pairs, axis=1))
    col = jnp.diagonal(_log_softmax_masked(logits, pairs, axis=0))
    return jnp.where(valid, -0.5 * (row + col), 0.0)


# ----------------------------------------------------------------------------- soft targets


def soft_correspondence_targets(
    affinity_a: chex.Array,
    affinity_b: chex.Array,
    clean_prob: chex.Array,
    *,
    neighbour_weight: float = 0.1,
    temperature: float = 0.05,
    gate: str = "softmax",
    where: chex.Array | None = None,
) -> jax.Array:
    """Soft many-to-many matching targets (stop-gradient).

    .. math::
        Y_i = \\operatorname{normalise}\\Big(w_i e_i + \\lambda\\,
        \\operatorname{softmax}_{j \\ne i}\\big((A^a_{ij} + A^b_{ij}) / (2\\tau_t)\\big)\\Big)

    The annotated partner gets the pair's clean probability w_i; the rest of the mass goes to
    the pairs whose items are close to pair i inside both modalities (intra-modal affinities of
    the invariant codes, e.g. ``s_a @ s_a.T``). A noisy pair (w_i ≈ 0) is thus pulled toward
    its neighbours' partners instead of its wrong annotation. Built from symmetric affinities,
    row i of Y is also the target of column i (see ``soft_target_cross_entropy``).

    ``gate="softmax"`` (above) always hands the mass λ to *some* neighbours, however far: in a
    batch with no true positive of pair i it goes to the least wrong ones. ``gate="affinity"``
    gives each neighbour an absolute share of λ that decays with its distance from pair i's own
    self-affinity, and only normalises rows whose mass exceeds 1:

    .. math::
        g_{ij} = \\exp\\big((\\bar A_{ij} - \\bar A_{ii}) / \\tau_t\\big),\\quad
        \\bar A = (A^a + A^b)/2,\\qquad
        Y_i = \\frac{w_i e_i + \\lambda \\sum_{j \\ne i} g_{ij} e_j}
                   {\\max(1,\\ w_i + \\lambda \\sum_{j \\ne i} g_{ij})}

    (g_ij ≤ 1 for unit-norm codes). A clean pair without near neighbours keeps its one-hot
    row; a noisy pair (w_i ≈ 0) without near neighbours gets an almost empty row and drops out
    of the loss instead of being pulled toward arbitrary partners.
    Absolute affinities have no scale, though: codes that start (or collapse) close together
    make every neighbour count and the targets uniform, a fixed point training does not leave
    (DisNCL at lambda = 1 collapsed so: docs/results_retrieval.md).

    ``gate="mutual"`` is scale-free: pair i's only neighbour is j when j is i's nearest
    neighbour in *both* modalities (j = argmax_k A^a_ik = argmax_k A^b_ik), and
    Y_i = normalise(w_i e_i + λ e_j) (rows sum to 1; a noisy pair without an agreeing
    neighbour gets an empty row). Two modalities that agree by chance do so for about one pair
    in N; content the two share (a true many-to-many positive) makes them agree.

    Args:
      affinity_a: ``[N, N]`` intra-modal affinities of modality a (symmetric).
      affinity_b: ``[N, N]`` intra-modal affinities of modality b (symmetric).
      clean_prob: ``[N]`` clean probabilities w_i in [0, 1].
      neighbour_weight: lambda >= 0, the mass given to the neighbours before normalising.
      temperature: tau_t > 0 of the neighbour softmax (or of the affinity gate).
      gate: "softmax" (rows sum to 1), "affinity" (rows sum to at most 1) or "mutual".
      where: optional ``[N]`` bool mask; masked pairs get a zero row and zero column.

    Returns:
      ``[N, N]`` targets under ``jax.lax.stop_gradient``; with ``gate="softmax"`` valid rows
      sum to 1 (a row with w_i = lambda = 0 is all zero and contributes no loss).

    References:
      docs/methods.md §2 (reconstruction [R]); Dang et al., IEEE TIP 2025.
    """
    _check_square(affinity_a)
    chex.assert_equal_shape([affinity_a, affinity_b])
    n = affinity_a.shape[0]
    chex.assert_shape(clean_prob, (n,))
    valid = _valid(n, where)
    eye = jnp.eye(n, dtype=bool)
    neighbours = valid[:, None] & valid[None, :] & ~eye
    w = jnp.where(valid, jnp.asarray(clean_prob, dtype=affinity_a.dtype), 0.0)
    if gate == "affinity":
        mean_aff = _zero_masked(affinity_a + affinity_b, valid) / 2.0
        gap = mean_aff - jnp.diagonal(mean_aff)[:, None]
        g = jnp.where(neighbours, jnp.exp(jnp.minimum(gap, 0.0) / temperature), 0.0)
        unnormalised = w[:, None] * eye + neighbour_weight * g
        total = jnp.sum(unnormalised, axis=1, keepdims=True)
        return jax.lax.stop_gradient(unnormalised / jnp.maximum(total, 1.0))
    if gate == "mutual":
        # j is pair i's neighbour when it is i's nearest neighbour in *both* modalities.
        nn_a = jnp.argmax(jnp.where(neighbours, affinity_a, -jnp.inf), axis=1)
        nn_b = jnp.argmax(jnp.where(neighbours, affinity_b, -jnp.inf), axis=1)
        agree = (nn_a == nn_b) & jnp.any(neighbours, axis=1)
        g = jnp.where(agree[:, None] & neighbours, jax.nn.one_hot(nn_a, n, dtype=w.dtype), 0.0)
        unnormalised = w[:, None] * eye + neighbour_weight * g
        total = jnp.sum(unnormalised, axis=1, keepdims=True)
        targets = jnp.where(total > 0, unnormalised / jnp.where(total > 0, total, 1.0), 0.0)
        return jax.lax.stop_gradient(targets)
    if gate != "softmax":
        raise ValueError(f"gate must be 'softmax', 'affinity' or 'mutual', got {gate!r}")
    logits = _zero_masked(affinity_a + affinity_b, valid) / (2.0 * temperature)
    has_neighbour = jnp.any(neighbours, axis=1, keepdims=True)
    neighbour_probs = jnp.where(
        has_neighbour, jnp.exp(_log_softmax_masked(logits, neighbours, axis=1)), 0.0
    )
    neighbour_probs = jnp.where(neighbours, neighbour_probs, 0.0)
    unnormalised = w[:, None] * eye + neighbour_weight * neighbour_probs
    total = jnp.sum(unnormalised, axis=1, keepdims=True)
    targets = jnp.where(total > 0, unnormalised / jnp.where(total > 0, total, 1.0), 0.0)
    return jax.lax.stop_gradient(targets)


def directional_soft_targets(
    affinity_a: chex.Array,
    affinity_b: chex.Array,
    clean_prob: chex.Array,
    *,
    neighbour_weight: float = 0.1,
    temperature: float = 0.05,
    clean_neighbours: bool = True,
    normalise: bool = False,
    trusted: str = "own",
    where: chex.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Soft many-to-many targets per direction, each from its query modality's affinities.

    .. math::
        Y^{a\to b}_{ij} = w_i\\,\\delta_{ij} + \\lambda\\,
            \frac{w_j \\exp(A^a_{ij}/\tau_t)}{\\sum_{k \ne i} w_k \\exp(A^a_{ik}/\tau_t)}
            \\ (j \ne i),
        \\qquad Y^{b\to a} \text{ the same with } A^b

    Item a_i's target over the b items: its annotated partner with the pair's clean
    probability w_i, and mass λ on the partners of the items of *its own* modality that are
    close to it (A^a, e.g. ``s_a @ s_a.T``), each neighbour counted by its own clean
    probability w_j (``clean_neighbours``), since a neighbour's partner is evidence only if
    that pair is clean. Unlike ``soft_correspondence_targets`` (one matrix from A^a + A^b for
    both directions), a noisy pair's image and caption describe different content, so each
    direction looks up neighbours in the query's modality alone.

    ``trusted="a"`` or ``"b"`` names a modality whose affinities say more about content (on
    the scenes benchmark, captions: their MII codes find a true many-to-many positive as the
    nearest neighbour 94% of the time, images' 29%). The trusted modality's rows keep their
    own affinities; the other modality's row i uses w_i A^trusted_i + (1 - w_i) A^own_i, since
    a clean pair's trusted item describes the same content and a noisy pair's does not.

    With ``normalise=False`` rows keep their mass w_i + λ (λ only where some neighbour has
    w_j > 0): in ``soft_target_cross_entropy`` a row's loss is then weighted by its mass, so a
    noisy pair (w_i ≈ 0) contributes only its neighbours' λ share, and at λ = 0 the loss
    is the clean-weighted InfoNCE of hard targets. ``normalise=True`` scales every non-empty row
    to sum 1, as ``soft_correspondence_targets`` does.

    Args:
      affinity_a: ``[N, N]`` intra-modal affinities of modality a.
      affinity_b: ``[N, N]`` intra-modal affinities of modality b.
      clean_prob: ``[N]`` clean probabilities w_i in [0, 1].
      neighbour_weight: lambda >= 0.
      temperature: tau_t > 0 of the neighbour softmax.
      clean_neighbours: weight each neighbour j by w_j (False: every neighbour counts fully).
      normalise: rows summing to 1 instead of w_i + lambda.
      trusted: "own" (each direction its query modality's affinities), "a" or "b".
      where: optional ``[N]`` bool mask; masked pairs get zero rows and columns.

    Returns:
      ``(Y_ab, Y_ba)``, each ``[N, N]`` under ``jax.lax.stop_gradient``: row i of ``Y_ab`` is
      the target of a_i over the b items, row i of ``Y_ba`` that of b_i over the a items (pass
      it as ``col_targets`` to ``soft_target_cross_entropy``).

    References:
      docs/disncl.md, "Matching and the soft many-to-many targets" (reconstruction [R]).
    """
    _check_square(affinity_a)
    chex.assert_equal_shape([affinity_a, affinity_b])
    n = affinity_a.shape[0]
    chex.assert_shape(clean_prob, (n,))
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if trusted not in ("own", "a", "b"):
        raise ValueError(f"trusted must be 'own', 'a' or 'b', got {trusted!r}")
    valid = _valid(n, where)
    eye = jnp.eye(n, dtype=bool)
    neighbours = valid[:, None] & valid[None, :] & ~eye
    w = jnp.where(valid, jnp.asarray(clean_prob, dtype=affinity_a.dtype), 0.0)
    tiny = jnp.finfo(w.dtype).tiny

    def one_way(affinity):
        logits = affinity / temperature
        if clean_neighbours:
            logits = logits + jnp.log(jnp.maximum(w, tiny))[None, :]
            allowed = neighbours & (w > 0)[None, :]
        else:
            allowed = neighbours
        has = jnp.any(allowed, axis=1, keepdims=True)
        probs = jnp.where(allowed & has, jnp.exp(_log_softmax_masked(logits, allowed, 1)), 0.0)
        y = w[:, None] * eye + neighbour_weight * probs
        if normalise:
            total = jnp.sum(y, axis=1, keepdims=True)
            y = jnp.where(total > 0, y / jnp.where(total > 0, total, 1.0), 0.0)
        return jax.lax.stop_gradient(y)

    mix = w[:, None]
    if trusted == "a":
        affinity_b = mix * affinity_a + (1.0 - mix) * affinity_b
    elif trusted == "b":
        affinity_a = mix * affinity_b + (1.0 - mix) * affinity_a
    return one_way(affinity_a), one_way(affinity_b)


def soft_target_cross_entropy(
    scores: chex.Array,
    targets: chex.Array,
    *,
    temperature: float = 0.05,
    where: chex.Array | None = None,
    col_targets: chex.Array | None = None,
) -> jax.Array:
    """Per-example two-way cross-entropy between soft targets and the similarity softmaxes.

    .. math::
        \\ell_i = \\tfrac12 \\Big[-\\sum_j Y_{ij} \\log \\operatorname{softmax}_j(Z_{ij})
                 - \\sum_j Y_{ij} \\log \\operatorname{softmax}_j(Z_{ji})\\Big],
        \\quad Z = S / \\tau

    i.e. ½[CE(Y, softmax_row Z) + CE(Yᵀ, softmax_col Z)] split per example: row i of Y is the
    target of item i of modality a over the b items, and of item i of modality b over the a
    items. With Y = I this is ``symmetric_infonce_loss``.

    ``col_targets`` (optional) gives modality b's items their own targets: row i of it is
    the target of b_i over the a items (``directional_soft_targets``); without it row i of
    ``targets`` serves both. Rows need not sum to 1: a row's loss scales with its mass.

    Args:
      scores: ``[N, N]`` similarities, annotated pairs on the diagonal.
      targets: ``[N, N]`` targets, rows summing to 1 (e.g. ``soft_correspondence_targets``).
      temperature: tau > 0.
      where: optional ``[N]`` bool mask of valid examples (masked items leave both softmaxes).
      col_targets: optional ``[N, N]`` targets of the b items over the a items.

    Returns:
      ``[N]`` per-example losses (0 where masked).

    References:
      docs/methods.md §2 (reconstruction [R]).
    """
    _check_square(scores)
    chex.assert_equal_shape([scores, targets])
    valid = _valid(scores.shape[0], where)
    logits = _zero_masked(scores, valid) / temperature
    pairs = valid[:, None] & valid[None, :]
    if col_targets is None:
        col_targets = targets
    chex.assert_equal_shape([scores, col_targets])
    targets = _zero_masked(targets, valid)
    col_targets = _zero_masked(col_targets, valid)
    log_p_row = _log_softmax_masked(logits, pairs, axis=1)  # [i, j]: a_i -> b_j
    log_p_col = _log_softmax_masked(logits, pairs, axis=0).T  # [j, i]: b_j -> a_i
    row = -jnp.sum(targets * log_p_row, axis=1)
    col = -jnp.sum(col_targets * log_p_col, axis=1)
    return jnp.where(valid, 0.5 * (row + col), 0.0)


# ----------------------------------------------------------------------------- NCR rectification


def ncr_label_prediction(
    scores: chex.Array, *, margin: float = 0.2, where: chex.Array | None = None
) -> jax.Array:
    """NCR's predicted correspondence label of each pair (its "co-rectified" soft label).

    .. math::
        p_i = \\operatorname{clip}\\Big(\\alpha - \\tfrac12\\big[\\tfrac1n\\sum_{j\\ne i}
              [\\alpha + S_{ij} - S_{ii}]_+ + \\tfrac1n\\sum_{j\\ne i}
              [\\alpha + S_{ji} - S_{ii}]_+\\big], 0, \\alpha\\Big), \\quad
        \\hat y_i = \\operatorname{clip}\\big(p_i / \\operatorname{mean}(\\text{top-}(n//10+1)\\
              \\text{ of } p), 0, 1\\big)

    with n the number of valid pairs (NCR divides by the batch size, diagonal included).
    A pair whose image and caption beat their in-batch negatives by the margin gets ~1.

    Args:
      scores: ``[N, N]`` similarities, annotated pairs on the diagonal.
      margin: alpha (NCR: 0.2).
      where: optional ``[N]`` bool mask; the prediction uses valid pairs only (0 elsewhere).

    Returns:
      ``[N]`` labels in [0, 1] (0 where masked). Compute them on stop-gradient scores.

    References:
      Huang et al., NeurIPS 2021, eq. (6) and their ``ContrastiveLoss(mode="predict")``.
    """
    _check_square(scores)
    n = scores.shape[0]
    valid = _valid(n, where)
    scores = _zero_masked(scores, valid)
    positive = jnp.diagonal(scores)
    negatives = valid[:, None] & valid[None, :] & ~jnp.eye(n, dtype=bool)
    cost_row = jnp.where(negatives, jax.nn.relu(margin + scores - positive[:, None]), 0.0)
    cost_col = jnp.where(negatives, jax.nn.relu(margin + scores.T - positive[:, None]), 0.0)
    count = jnp.maximum(jnp.sum(valid), 1)
    p = margin - 0.5 * (jnp.sum(cost_row, axis=1) + jnp.sum(cost_col, axis=1)) / count
    p = jnp.clip(p, 0.0, margin)
    k = count // 10 + 1
    top = jnp.sort(jnp.where(valid, p, -jnp.inf))[::-1]
    top_mean = jnp.sum(jnp.where(jnp.arange(n) < k, top, 0.0)) / k
    labels = jnp.clip(p / jnp.maximum(top_mean, 1e-12), 0.0, 1.0)
    return jnp.where(valid, labels, 0.0)
