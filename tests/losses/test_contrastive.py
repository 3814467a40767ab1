"""Contrastive losses against hand-computed 3 × 3 examples; gradients, masks, jit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxmr.losses import contrastive as cl

# Images are rows, captions columns, annotated pairs on the diagonal.
S = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.7], [0.4, 0.5, 0.6]], np.float32)


def test_hardest_negative_triplet_by_hand():
    # Pair 1: caption 2 beats caption 1 for image 1 by 0.7 + 0.2 - 0.8 = 0.1; images fine.
    # Pair 2: caption 1 for image 2: 0.2 + 0.5 - 0.6 = 0.1; image 1 for caption 2:
    # 0.2 + 0.7 - 0.6 = 0.3.
    loss = jax.jit(cl.triplet_hinge_loss)(S)
    np.testing.assert_allclose(loss, [0.0, 0.1, 0.4], atol=1e-6)


def test_mean_negative_triplet_by_hand():
    loss = jax.jit(functools.partial(cl.triplet_hinge_loss, hardest_negative=False))(S)
    np.testing.assert_allclose(loss, [0.0, 0.1 / 2, 0.1 / 2 + 0.3 / 2], atol=1e-6)


def test_per_pair_margins_belong_to_the_anchor_pair():
    # Margins 0.2 / 0 / 0.1: pair 1 is satisfied; for pair 2 only image 1 for caption 2 is
    # violated: 0.1 + 0.7 - 0.6 = 0.2.
    loss = jax.jit(cl.triplet_hinge_loss)(S, margin=jnp.array([0.2, 0.0, 0.1]))
    np.testing.assert_allclose(loss, [0.0, 0.0, 0.2], atol=1e-6)


def test_ncr_soft_margins():
    w = jnp.array([1.0, 0.0, 0.5])
    np.testing.assert_allclose(cl.ncr_soft_margin(w, kind="linear"), [0.2, 0.0, 0.1], atol=1e-7)
    expected = 0.2 * np.array([1.0, 0.0, (np.sqrt(10) - 1) / 9])
    np.testing.assert_allclose(cl.ncr_soft_margin(w), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(cl.ncr_soft_margin(w, kind="sine"), [0.2, 0.0, 0.1], atol=1e-7)
    with pytest.raises(ValueError, match="kind"):
        cl.ncr_soft_margin(w, kind="cubic")


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.log(np.sum(np.exp(x)))


def test_symmetric_infonce_by_hand():
    tau = 0.5
    expected = [
        -0.5 * (_log_softmax(S[i] / tau)[i] + _log_softmax(S[:, i] / tau)[i]) for i in range(3)
    ]
    loss = jax.jit(functools.partial(cl.symmetric_infonce_loss, temperature=tau))(S)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


AFFINITY = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.0]], np.float32)


def test_soft_targets_by_hand():
    # (A + A) / (2 * 0.5) = 2A off the diagonal; lambda = 0.5; w = (1, 0, 0.5).
    # Row 0: softmax(1, 0) = (e, 1)/(e + 1); (1, 0.5 e/(e+1), 0.5/(e+1)) / 1.5.
    # Row 1: w = 0, so all the mass goes to the neighbours: softmax(1, 0.4).
    # Row 2: (0.5 softmax(0, 0.4), 0.5) / 1.
    e = np.e
    s1 = np.exp([1.0, 0.4]) / np.exp([1.0, 0.4]).sum()
    s2 = np.exp([0.0, 0.4]) / np.exp([0.0, 0.4]).sum()
    expected = [
        [1 / 1.5, 0.5 * e / (e + 1) / 1.5, 0.5 / (e + 1) / 1.5],
        [s1[0], 0.0, s1[1]],
        [0.5 * s2[0], 0.5 * s2[1], 0.5],
    ]
    build = functools.partial(cl.soft_correspondence_targets, neighbour_weight=0.5, temperature=0.5)
    y = jax.jit(build)(AFFINITY, AFFINITY, jnp.array([1.0, 0.0, 0.5]))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    # Targets are constants for the encoders.
    grad = jax.jit(jax.grad(lambda a: jnp.sum(build(a, a, jnp.array([1.0, 0.0, 0.5])) ** 2)))(
        AFFINITY
    )
    assert np.all(np.asarray(grad) == 0)


def test_soft_targets_affinity_gate_by_hand():
    # g_ij = exp((A_ij - A_ii) / 0.5); lambda = 0.5; w = (1, 0, 0.5); rows over 1 normalised.
    e = np.exp
    row0 = np.array([1.0, 0.5 * e(-1.0), 0.5 * e(-2.0)])
    expected = [
        row0 / row0.sum(),  # 1.25 > 1: normalised
        [0.5 * e(-1.0), 0.0, 0.5 * e(-1.6)],  # noisy, far neighbours: mass 0.29 only
        [0.5 * e(-2.0), 0.5 * e(-1.6), 0.5],
    ]
    build = functools.partial(
        cl.soft_correspondence_targets, neighbour_weight=0.5, temperature=0.5, gate="affinity"
    )
    y = jax.jit(build)(AFFINITY, AFFINITY, jnp.array([1.0, 0.0, 0.5]))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-7)
    # A clean pair whose neighbours are all far keeps (almost) its one-hot row.
    far = np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32)
    y = build(far, far, jnp.array([1.0, 0.0]), temperature=0.05)
    np.testing.assert_allclose(y, [[1.0, 0.0], [0.0, 0.0]], atol=1e-6)
    with pytest.raises(ValueError, match="gate"):
        cl.soft_correspondence_targets(AFFINITY, AFFINITY, jnp.ones(3), gate="nearest")


def test_soft_targets_mutual_gate_by_hand():
    # Nearest neighbours: in A_a 0->1, 1->0, 2->1; in A_b 0->1, 1->2, 2->1.
    a_a = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.0]], np.float32)
    a_b = np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.6], [0.1, 0.6, 1.0]], np.float32)
    y = jax.jit(
        functools.partial(cl.soft_correspondence_targets, neighbour_weight=1.0, gate="mutual")
    )(a_a, a_b, jnp.array([1.0, 1.0, 0.0]))
    expected = [
        [0.5, 0.5, 0.0],  # both modalities agree on 1: half the mass
        [0.0, 1.0, 0.0],  # they disagree (0 vs 2): the one-hot row
        [0.0, 1.0, 0.0],  # noisy (w = 0), both agree on 1: all of it
    ]
    np.testing.assert_allclose(y, expected, atol=1e-7)
    # A noisy pair whose modalities disagree gets an empty row.
    y = cl.soft_correspondence_targets(a_a, a_b, jnp.array([1.0, 0.0, 1.0]), gate="mutual")
    np.testing.assert_allclose(y[1], 0.0, atol=1e-7)


def test_soft_targets_without_neighbour_mass_are_hard_or_empty():
    y = jax.jit(cl.soft_correspondence_targets)(
        AFFINITY, AFFINITY, jnp.array([1.0, 0.0, 0.3]), neighbour_weight=0.0
    )
    np.testing.assert_allclose(y, np.diag([1.0, 0.0, 1.0]), atol=1e-7)


def test_directional_soft_targets_by_hand():
    # Images' affinities A_a = AFFINITY, captions' A_b below; lambda = 0.5, tau = 0.5,
    # w = (1, 0, 0.5). Neighbour logits A/tau + log w_j over j != i with w_j > 0.
    a_b = np.array([[1.0, 0.1, 0.9], [0.1, 1.0, 0.3], [0.9, 0.3, 1.0]], np.float32)
    w = np.array([1.0, 0.0, 0.5])
    e = np.exp

    def neighbour_row(a, i):
        cand = [j for j in range(3) if j != i and w[j] > 0]
        z = np.array([e(a[i, j] / 0.5) * w[j] for j in cand])
        row = np.zeros(3)
        row[cand] = z / z.sum()
        return row

    for a, out in zip((AFFINITY, a_b), (0, 1), strict=True):
        a = np.asarray(a)
        expected = np.stack([w[i] * np.eye(3)[i] + 0.5 * neighbour_row(a, i) for i in range(3)])
        y = jax.jit(
            functools.partial(cl.directional_soft_targets, neighbour_weight=0.5, temperature=0.5)
        )(AFFINITY, a_b, jnp.asarray(w, jnp.float32))[out]
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-7)
        # Row masses w_i + lambda: the noisy pair 1 keeps only its neighbours' share.
        np.testing.assert_allclose(np.sum(y, axis=1), w + 0.5, rtol=1e-5)
        # Pair 1 (w = 0) is nobody's neighbour: its caption is not evidence.
        assert np.all(np.asarray(y)[[0, 2], 1] == 0)
    # The two directions differ: image 0's nearest is 1 (0.5 vs 0.0; only 2 is clean), caption
    # 0's nearest is 2 (0.9); both put all the neighbour mass on pair 2 since pair 1 is noisy,
    # but with every neighbour counted (clean_neighbours=False) they disagree.
    y_ab, y_ba = cl.directional_soft_targets(
        AFFINITY, a_b, jnp.ones(3), neighbour_weight=1.0, temperature=0.5, clean_neighbours=False
    )
    assert y_ab[0, 1] > y_ab[0, 2] and y_ba[0, 2] > y_ba[0, 1]
    # normalise=True: rows sum to 1 (an empty row stays empty).
    y_ab, _ = cl.directional_soft_targets(
        AFFINITY, a_b, jnp.array([1.0, 0.0, 0.0]), neighbour_weight=0.5, normalise=True
    )
    np.testing.assert_allclose(np.sum(y_ab, axis=1), [1.0, 1.0, 1.0], rtol=1e-6)
    y_ab, _ = cl.directional_soft_targets(
        AFFINITY, a_b, jnp.zeros(3), neighbour_weight=0.5, normalise=True
    )
    np.testing.assert_allclose(y_ab, 0.0, atol=0)
    with pytest.raises(ValueError, match="temperature"):
        cl.directional_soft_targets(AFFINITY, a_b, jnp.ones(3), temperature=0.0)


def test_directional_targets_trusted_modality():
    # trusted="b": the b rows keep A^b; the a rows use w_i A^b + (1 - w_i) A^a.
    a_b = np.array([[1.0, 0.1, 0.9], [0.1, 1.0, 0.3], [0.9, 0.3, 1.0]], np.float32)
    w = jnp.array([1.0, 0.0, 0.5])
    build = functools.partial(
        cl.directional_soft_targets, neighbour_weight=0.5, temperature=0.5, clean_neighbours=False
    )
    y_ab, y_ba = build(AFFINITY, a_b, w, trusted="b")
    mixed = np.asarray(w)[:, None] * a_b + (1 - np.asarray(w)[:, None]) * AFFINITY
    want_ab, _ = build(jnp.asarray(mixed), a_b, w)
    _, want_ba = build(AFFINITY, a_b, w)
    np.testing.assert_allclose(y_ab, want_ab, rtol=1e-6)
    np.testing.assert_allclose(y_ba, want_ba, rtol=1e-6)
    # The clean pair 0 looks through its caption: neighbour 2 (A^b 0.9) beats 1 (0.1), while
    # by its own image affinities 1 (0.5) beats 2 (0.0).
    assert y_ab[0, 2] > y_ab[0, 1]
    assert build(AFFINITY, a_b, w)[0][0, 1] > build(AFFINITY, a_b, w)[0][0, 2]
    y_ab, y_ba = build(AFFINITY, a_b, w, trusted="a")
    np.testing.assert_allclose(y_ab, build(AFFINITY, a_b, w)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="trusted"):
        build(AFFINITY, a_b, w, trusted="text")


def test_directional_targets_without_neighbours_give_the_hard_loss():
    # lambda = 0: rows w_i e_i, so sum(per) / sum(mass) is the clean-weighted InfoNCE.
    rng = np.random.default_rng(3)
    scores = jnp.asarray(rng.normal(size=(6, 6)), jnp.float32)
    aff = jnp.asarray(rng.normal(size=(6, 6)), jnp.float32)
    w = jnp.asarray(rng.uniform(size=6), jnp.float32)
    y_ab, y_ba = cl.directional_soft_targets(aff, aff.T, w, neighbour_weight=0.0)
    per = cl.soft_target_cross_entropy(scores, y_ab, temperature=0.1, col_targets=y_ba)
    hard = w * cl.symmetric_infonce_loss(scores, temperature=0.1)
    np.testing.assert_allclose(per, hard, rtol=1e-5, atol=1e-6)


def test_soft_cross_entropy_with_column_targets_by_hand():
    y = np.array([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], np.float32)
    yc = np.array([[0.0, 0.5, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, 2.0]], np.float32)
    tau = 0.5
    row = [-np.sum(y[i] * _log_softmax(S[i] / tau)) for i in range(3)]
    col = [-np.sum(yc[i] * _log_softmax(S[:, i] / tau)) for i in range(3)]
    loss = jax.jit(functools.partial(cl.soft_target_cross_entropy, temperature=tau))(
        S, y, col_targets=yc
    )
    np.testing.assert_allclose(loss, 0.5 * (np.array(row) + np.array(col)), rtol=1e-5)


def test_soft_cross_entropy_by_hand():
    y = np.array([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], np.float32)
    tau = 0.5
    row = [-np.sum(y[i] * _log_softmax(S[i] / tau)) for i in range(3)]
    # Caption i's distribution over images is column i of S; its target is row i of Y.
    col = [-np.sum(y[i] * _log_softmax(S[:, i] / tau)) for i in range(3)]
    loss = jax.jit(functools.partial(cl.soft_target_cross_entropy, temperature=tau))(S, y)
    np.testing.assert_allclose(loss, 0.5 * (np.array(row) + np.array(col)), rtol=1e-5)


def test_soft_cross_entropy_with_identity_targets_is_clip():
    scores = jnp.asarray(np.random.default_rng(0).normal(size=(6, 6)), jnp.float32)
    soft = jax.jit(cl.soft_target_cross_entropy)(scores, jnp.eye(6), temperature=0.1)
    clip = jax.jit(cl.symmetric_infonce_loss)(scores, temperature=0.1)
    np.testing.assert_allclose(soft, clip, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- generic properties

TARGETS = jnp.asarray(np.full((5, 5), 0.1) + 0.5 * np.eye(5), jnp.float32)
LOSSES = {
    "triplet_hardest": cl.triplet_hinge_loss,
    "triplet_mean": functools.partial(cl.triplet_hinge_loss, hardest_negative=False),
    "triplet_soft_margin": functools.partial(
        cl.triplet_hinge_loss, margin=jnp.array([0.2, 0.1, 0.0, 0.05, 0.2])
    ),
    "infonce": functools.partial(cl.symmetric_infonce_loss, temperature=0.1),
    "soft_ce": lambda s, where=None: cl.soft_target_cross_entropy(
        s, TARGETS, temperature=0.1, where=where
    ),
}


def loss_table(scores, where=None, names=tuple(LOSSES)):
    w = jnp.ones(scores.shape[0]) if where is None else where.astype(jnp.float32)
    return jnp.stack([jnp.sum(LOSSES[k](scores, where=where)) / jnp.sum(w) for k in names])


def test_losses_gradients_jit_and_collapse():
    scores = jnp.asarray(np.random.default_rng(1).normal(size=(5, 5)), jnp.float32)
    names = ("infonce", "soft_ce", "triplet_mean")  # piecewise-linear max: no finite differences
    fn = jax.jit(functools.partial(loss_table, names=names))
    check_grads(fn, (scores,), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)
    np.testing.assert_allclose(loss_table(scores), jax.jit(loss_table)(scores), rtol=1e-5)
    # All-equal embeddings give all-equal scores: finite losses and gradients.
    flat = jnp.ones((5, 5))
    jac = jax.jit(jax.jacrev(loss_table))(flat)
    assert np.all(np.isfinite(loss_table(flat))) and np.all(np.isfinite(jac))
    np.testing.assert_allclose(loss_table(flat)[:2], 2 * 0.2, rtol=1e-6)  # every margin violated


def test_losses_ignore_masked_examples():
    keep = np.array([0, 1, 3, 5, 6])
    where = jnp.array([True, True, False, True, False, True, True])
    small = np.random.default_rng(2).normal(size=(5, 5)).astype(np.float32)
    big = jnp.full((7, 7), jnp.inf).at[np.ix_(keep, keep)].set(small)
    names = tuple(k for k in LOSSES if k not in ("soft_ce", "triplet_soft_margin"))  # fixed [5]
    fn = jax.jit(functools.partial(loss_table, names=names))
    np.testing.assert_allclose(fn(big, where), fn(jnp.asarray(small)), rtol=1e-5, atol=1e-6)
    jac = np.asarray(jax.jit(jax.jacrev(functools.partial(loss_table, names=names)))(big, where))
    assert np.all(np.isfinite(jac))
    assert np.all(jac[:, [2, 4]] == 0) and np.all(jac[:, :, [2, 4]] == 0)


def test_soft_pipeline_ignores_masked_examples():
    """Targets and soft cross-entropy on a batch with a masked (garbage) pair equal those of
    the batch without it."""
    keep = np.array([0, 2, 3])
    where = jnp.array([True, False, True, True])
    rng = np.random.default_rng(3)
    codes = rng.normal(size=(4, 3)).astype(np.float32)
    garbage = lambda m: m.at[1, :].set(jnp.inf).at[:, 1].set(jnp.inf)
    aff = garbage(jnp.asarray(codes @ codes.T))
    scores = garbage(jnp.asarray(rng.normal(size=(4, 4)), jnp.float32))
    w = jnp.array([0.9, 0.5, 0.1, 0.7])

    def pipeline(scores, aff, w, where):
        y = cl.soft_correspondence_targets(aff, aff, w, neighbour_weight=0.3, where=where)
        return cl.soft_target_cross_entropy(scores, y, where=where), y

    pipeline = jax.jit(pipeline)
    full, y_full = pipeline(scores, aff, w, where)
    sub, y_sub = pipeline(scores[np.ix_(keep, keep)], aff[np.ix_(keep, keep)], w[keep], None)
    np.testing.assert_allclose(y_full[np.ix_(keep, keep)], y_sub, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(y_full)[1] == 0) and np.all(np.asarray(y_full)[:, 1] == 0)
    np.testing.assert_allclose(full[keep], sub, rtol=1e-5)
    assert full[1] == 0
    grad = jax.jit(jax.grad(lambda s: jnp.sum(pipeline(s, aff, w, where)[0])))(scores)
    assert np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[1] == 0) and np.all(np.asarray(grad)[:, 1] == 0)


def test_rejects_non_square_scores():
    with pytest.raises(ValueError, match="square"):
        cl.symmetric_infonce_loss(jnp.ones((3, 4)))


def _ncr_predict_port(scores, margin=0.2):
    """NCR's ContrastiveLoss(mode="predict") followed by clamp(0, 1), in numpy loops."""
    n = scores.shape[0]
    p = np.zeros(n)
    for i in range(n):
        cs = sum(max(0.0, margin + scores[i, j] - scores[i, i]) for j in range(n) if j != i) / n
        ci = sum(max(0.0, margin + scores[j, i] - scores[i, i]) for j in range(n) if j != i) / n
        p[i] = min(max(margin - (cs + ci) / 2, 0.0), margin)
    top = np.sort(p)[-(n // 10 + 1) :]
    return np.clip(p / top.mean(), 0, 1)


def test_ncr_label_prediction_matches_reference_port():
    from jaxmr.losses.contrastive import ncr_label_prediction

    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.3, 0.6, size=(23, 23)) + np.eye(23) * rng.uniform(0, 0.5, 23)
    got = np.asarray(ncr_label_prediction(jnp.asarray(scores, jnp.float32)))
    np.testing.assert_allclose(got, _ncr_predict_port(scores), rtol=1e-5, atol=1e-6)
    # A mask gives the prediction of the valid sub-batch alone.
    keep = rng.random(23) < 0.6
    masked = np.asarray(ncr_label_prediction(jnp.asarray(scores, jnp.float32), where=keep))
    np.testing.assert_allclose(
        masked[keep], _ncr_predict_port(scores[np.ix_(keep, keep)]), rtol=1e-5, atol=1e-6
    )
    assert np.all(masked[~keep] == 0)
