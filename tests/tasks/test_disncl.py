"""DisNCL: the estimator phase updates only its own parameters, every term is logged, the
held-out MI estimate against a closed form, ablations build, smoke train + eval."""

import jax
import numpy as np
import pytest

from configs import disncl_synthetic
from jaxmr.evaluate import evaluate
from jaxmr.tasks import build_task
from jaxmr.tasks.retrieval.evaluators import (
    heldout_gaussian_mi,
    heldout_mlp_mi,
    neighbour_precision,
)
from jaxmr.tasks.retrieval.nets import Nets
from jaxmr.train import loop
from jaxmr.train import mesh as mesh_lib
from jaxmr.train import step as step_lib
from jaxmr.train.record import flatten
from jaxmr.train.task import Task


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _config(cache, arg="smoke", **overrides):
    config = disncl_synthetic.get_config(arg)
    config.data.cache_dir = cache
    config.num_devices = 1
    config.update_from_flattened_dict(overrides)
    return config


@pytest.fixture(scope="module")
def stepped(cache):
    """One compiled full training step (encoder phases, then the estimator phase 3 times),
    shared by the tests below: compiling DisNCL's step is most of their cost."""
    config = _config(cache, **{"loss.est_repeats": 3})
    task = build_task(config)
    batch = task.make_sampler(batch_size=32, seed=0).batch(0)
    state = step_lib.init_state(task, jax.random.key(0), mesh_lib.make_data_mesh(1))
    init = jax.device_get(state)
    after, metrics = jax.jit(step_lib.make_train_step(task))(state, batch, jax.random.key(1))
    return dict(config=config, task=task, batch=batch, init=init, after=after, metrics=metrics)


def test_estimator_phase_updates_only_the_estimators(stepped):
    task, batch = stepped["task"], stepped["batch"]
    assert [p.name for p in task.phases] == ["net_a", "net_b", "est"]
    assert task.phases[2].repeats == 3
    est_only = Task(**{**task.__dict__, "phases": (task.phases[2],)})
    # Start from the state after one full step, so that the carry holds the codes the
    # estimator phase fits on.
    state = stepped["after"]
    before = jax.device_get(state)
    after, m = jax.jit(step_lib.make_train_step(est_only))(state, batch, jax.random.key(2))
    after = jax.device_get(after)
    for net in ("net_a", "net_b"):
        for x, y in zip(
            jax.tree.leaves(before.params[net]), jax.tree.leaves(after.params[net]), strict=True
        ):
            np.testing.assert_array_equal(x, y)
    for g in ("est_net_a", "est_net_b"):
        changed = [
            not np.array_equal(x, y)
            for x, y in zip(
                jax.tree.leaves(before.params[g]), jax.tree.leaves(after.params[g]), strict=True
            )
        ]
        assert any(changed), g
    assert "est/net_a/image_est_loss" in m


def test_estimator_fits_the_codes_of_the_encoders_before_their_update(stepped):
    """The encoder phases hand their stop-gradient codes to the estimator phase through the
    carry: after a step the carry holds the codes of the step's *initial* parameters."""
    config, task, batch = stepped["config"], stepped["task"], stepped["batch"]
    init, after = stepped["init"], jax.device_get(stepped["after"])
    dims = (batch["images"].shape[-1], task.info["data"].vocab_size)
    nets = Nets(config.model, *dims, task.info["nets"], disentangled=True)
    for net in nets.names:
        model = nets.bind(init.params, net)
        codes = after.carry[f"codes_{net}"]
        img = model.image_codes(batch["images"])
        txt = model.text_codes(batch["tokens"], batch["lengths"])
        for k in ("s", "x"):
            np.testing.assert_allclose(codes[f"image_{k}"], img[k], atol=1e-5)
            np.testing.assert_allclose(codes[f"text_{k}"], txt[k], atol=1e-5)
        moved = nets.bind(after.params, net).image_codes(batch["images"])["s"]
        assert np.abs(np.asarray(moved) - codes["image_s"]).max() > 1e-4  # the nets did move


def test_every_term_is_logged_and_finite(stepped):
    m = stepped["metrics"]
    for term in ("match", "L_S", "L_S_infonce", "L_S_cond", "L_X", "L_Dis", "L_reg"):
        assert np.isfinite(m[f"net_a/{term}"]), term
    # L_Dis = gamma L_S + (1 - gamma) L_X
    g = stepped["config"].loss.gamma
    assert g == 0.5
    np.testing.assert_allclose(
        m["net_a/L_Dis"], g * m["net_a/L_S"] + (1 - g) * m["net_a/L_X"], rtol=1e-5
    )


def test_heldout_gaussian_mi_matches_closed_form():
    rng = np.random.default_rng(0)
    rho, k, n = 0.8, 3, 20000
    a = rng.normal(size=(n, k))
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=(n, k))
    true = -0.5 * k * np.log(1 - rho**2)
    assert abs(heldout_gaussian_mi(a, b) - true) < 0.05 * true
    assert heldout_gaussian_mi(a, rng.normal(size=(n, k))) < 0.01


def test_heldout_mlp_mi_sees_dependence_the_linear_estimate_cannot():
    # b = a^2 (plus noise) is uncorrelated with a: the linear estimate reads ~0, the MLP's
    # (never below the linear one) reads most of it; independent codes read ~0 from both.
    rng = np.random.default_rng(0)
    n, k = 3000, 4
    a = rng.normal(size=(n, 16))
    b = 0.8 * (a[:, :k] ** 2 - 1) / np.sqrt(2) + 0.6 * rng.normal(size=(n, k))
    true = -0.5 * k * np.log(0.36)  # 4.09 nats
    assert heldout_gaussian_mi(a, b) < 0.05
    assert 0.4 * true < heldout_mlp_mi(a, b) < 1.05 * true
    assert heldout_mlp_mi(a, rng.normal(size=(n, k))) < 0.05


def test_neighbour_precision_reads_which_codes_find_true_positives():
    # 400 pairs over 20 shared-factor combinations: text codes are the combination's unit
    # vector (every nearest neighbour with a positive in the batch is one), image codes noise.
    rng = np.random.default_rng(0)
    combo = rng.integers(0, 20, size=400)
    shared = np.stack([combo // 5, combo % 5], axis=1)
    s_text = np.eye(20)[combo] + 0.01 * rng.normal(size=(400, 20))
    s_image = rng.normal(size=(400, 20))
    out = neighbour_precision(s_image, s_text, shared, batch_size=64, batches=10)
    assert out["neighbour_precision/text"] == 1.0
    assert out["neighbour_precision/image"] < 0.3
    # 64 of 400 over 20 combinations: almost every row has a positive.
    assert 0.9 < out["neighbour_precision/positive_rows"] <= 1.0


def test_bad_soft_target_keys_are_named(cache):
    """A misspelt soft-target key stops the loss with an error naming it (one task, built once:
    the phase reads `config.loss` when it is traced)."""
    from jaxmr.train.task import StepContext

    config = _config(cache)
    task = build_task(config)
    batch = task.make_sampler(batch_size=16, seed=0).batch(0)
    params = task.init_fn(jax.random.key(0))
    ctx = StepContext(step=np.int32(0), epoch=np.int32(5), key=jax.random.key(0), carry={})
    good = dict(config.loss)
    for key, value in (
        ("soft_form", "jiont"),
        ("target_mass", "normalized"),
        ("neighbour_trusted", "caption"),
    ):
        config.loss.update(good)
        config.loss[key] = value
        with pytest.raises(ValueError, match=f"config.loss.{key} must be"):
            task.phases[0].loss_fn(params, batch, ctx)


# Left out for the suite's time: `none` (the smoke runs train it), and the ablations that are
# only combinations of settings the others build: `mei_resid` (built by
# test_mei_residual_coefficients_are_trained_only_by_their_fit), `no_club` (the default's
# decorrelation with no_reg's lambda_reg = 0), `no_mei_resid` (the decorrelations off, as
# no_reg and no_dis build it), `excl_all` (the default's removal with excl_resid's
# weighting); their configs are checked in
# test_the_two_decorrelations_are_refused_together_and_the_default_is_the_exclusive_residual.
COMBINATIONS = ("none", "mei_resid", "no_club", "no_mei_resid", "excl_all")


@pytest.mark.parametrize(
    "ablation", [a for a in disncl_synthetic.ABLATIONS if a not in COMBINATIONS]
)
def test_ablations_build(cache, ablation):
    config = _config(cache, f"smoke,ablation={ablation}")
    task = build_task(config)
    batch = task.make_sampler(batch_size=16, seed=0).batch(0)
    params = task.init_fn(jax.random.key(0))
    from jaxmr.train.task import StepContext

    ctx = StepContext(step=np.int32(0), epoch=np.int32(5), key=jax.random.key(0), carry={})
    phase = [p for p in task.phases if p.name != "est"][-1]  # net_b, or net_a alone
    loss, aux = phase.loss_fn(params, batch, ctx)
    assert np.isfinite(loss)
    if ablation == "single":
        assert [p.name for p in task.phases] == ["net_a", "est"]
    if ablation in ("no_dis", "no_reg"):
        assert config.loss.lambda_reg == 0.0


def test_directional_soft_targets_without_neighbours_are_the_hard_matching(cache):
    """`loss.soft_form="directional"` at lambda = 0 is exactly the clean-weighted InfoNCE of
    `loss.targets="hard"` (rows of mass w_i, normalised by the total mass); at lambda > 0 the
    matching term differs."""
    from jaxmr.train.task import StepContext

    ctx = StepContext(step=np.int32(0), epoch=np.int32(5), key=jax.random.key(0), carry={})
    matches = {}
    for name, over in (
        ("hard", {"loss.targets": "hard"}),
        ("soft0", {"loss.soft_form": "directional", "loss.neighbour_weight": 0.0}),
        ("soft", {"loss.soft_form": "directional", "loss.neighbour_trusted": "text"}),
    ):
        task = build_task(_config(cache, **over))
        batch = task.make_sampler(batch_size=16, seed=0).batch(0)
        batch = dict(batch, clean_prob_net_a=np.linspace(0.0, 1.0, 16, dtype=np.float32))
        params = task.init_fn(jax.random.key(0))
        phase = next(p for p in task.phases if p.name == "net_b")
        _, aux = phase.loss_fn(params, batch, ctx)
        matches[name] = float(aux["match"])
    np.testing.assert_allclose(matches["soft0"], matches["hard"], rtol=1e-5)
    assert abs(matches["soft"] - matches["hard"]) > 1e-4


def _head_grads_and_codes(cache, ablation, coef_key, batch_size, overrides=None):
    """Net a's image-head gradients of the encoder phase and its image codes, on a smoke
    batch, with the fitted coefficients `coef_key` set non-zero (so the residual depends on
    them): config, `g` (gradients of image_heads), `model` (bound), `c` (codes), and the
    `params`, `nets`, `batch` they came from."""
    import jax.numpy as jnp

    from jaxmr.train.task import StepContext

    config = _config(cache, f"smoke,ablation={ablation}", **(overrides or {}))
    task = build_task(config)
    batch = task.make_sampler(batch_size=batch_size, seed=0).batch(0)
    params = task.init_fn(jax.random.key(0))
    heads = params["net_a"]["image_heads"]
    heads[coef_key] = 0.01 * jnp.ones_like(heads[coef_key])
    ctx = StepContext(step=np.int32(0), epoch=np.int32(5), key=jax.random.key(0), carry={})
    phase = task.phases[0]
    grads = jax.grad(lambda p: phase.loss_fn(p, batch, ctx)[0])(params)
    dims = (batch["images"].shape[-1], task.info["data"].vocab_size)
    nets = Nets(config.model, *dims, task.info["nets"], disentangled=True)
    model = nets.bind(params, "net_a")
    g = grads["net_a"]["image_heads"]
    c = model.image_codes(batch["images"])
    return dict(config=config, g=g, model=model, c=c, params=params, nets=nets, batch=batch)


@pytest.mark.parametrize("fit_weight", [0.0, 1.0])
def test_decorrelation_coefficients_are_trained_only_by_their_fit(cache, fit_weight):
    """`ablation=decorr`: s = L2(u - x B) with B held fixed in the forward pass, so B's
    gradient is the least-squares fit's alone (zero when its weight is 0), and u and x get
    gradients through the residual."""
    import jax.numpy as jnp

    from jaxmr.losses import least_squares_loss

    overrides = {"loss.decor_fit_weight": fit_weight}
    out = _head_grads_and_codes(cache, "decorr", "decor_coef", 16, overrides)
    config, g, model, c = out["config"], out["g"], out["model"], out["c"]
    coef, intercept = model.heads("image").decor()
    fit_grad = jax.grad(lambda b: least_squares_loss(c["u"], c["x"], b, intercept))(coef)
    scale = config.model.decor_scale
    np.testing.assert_allclose(g["decor_coef"], fit_weight * scale * fit_grad, atol=1e-5)
    assert float(jnp.max(jnp.abs(fit_grad))) > 1e-3
    assert float(jnp.max(jnp.abs(g["mei"]["kernel"]))) > 0.0
    r = c["u"] - c["x"] @ coef
    np.testing.assert_allclose(c["s"], r / jnp.linalg.norm(r, axis=-1, keepdims=True), atol=1e-5)


def test_mei_residual_coefficients_are_trained_only_by_their_fit(cache):
    """`ablation=mei_resid`: x = L2(a - s D) with D and s held fixed in the forward pass, so
    D's gradient is the least-squares fit's alone and the MII head gets no gradient from the
    MEI objectives through x; with D at the closed-form regression of a on s the residual has
    zero cross-covariance with s (what the held-out linear MI reads)."""
    import jax.numpy as jnp

    from jaxmr.losses import least_squares_loss, residual_cross_covariance

    out = _head_grads_and_codes(cache, "mei_resid", "mei_decor_coef", 32)
    config, g, model, c = out["config"], out["g"], out["model"], out["c"]
    params, nets, batch = out["params"], out["nets"], out["batch"]
    heads = params["net_a"]["image_heads"]
    coef, intercept = model.heads("image").mei_decor()
    fit_grad = jax.grad(lambda d: least_squares_loss(c["a"], c["s"], d, intercept))(coef)
    scale = config.model.decor_scale
    np.testing.assert_allclose(g["mei_decor_coef"], scale * fit_grad, atol=1e-5)
    assert float(jnp.max(jnp.abs(fit_grad))) > 1e-3
    r = c["a"] - c["s"] @ coef
    np.testing.assert_allclose(c["x"], r / jnp.linalg.norm(r, axis=-1, keepdims=True), atol=1e-5)
    # with D at the closed-form regression (with intercept) of a on s: x's pre-normalisation
    # residual is uncorrelated with s; without it, it is not
    s_, a_ = np.asarray(c["s"], np.float64), np.asarray(c["a"], np.float64)
    design = np.concatenate([s_, np.ones((s_.shape[0], 1))], axis=1)
    sol = np.linalg.lstsq(design, a_, rcond=None)[0][:-1]
    heads["mei_decor_coef"] = jnp.asarray(sol / scale, jnp.float32)
    model = nets.bind(params, "net_a")
    c2 = model.image_codes(batch["images"])
    res = c2["a"] - c2["s"] @ model.heads("image").mei_decor()[0]
    assert float(jnp.max(jnp.abs(residual_cross_covariance(res, c2["s"])))) < 1e-5
    assert float(jnp.max(jnp.abs(residual_cross_covariance(c2["a"], c2["s"])))) > 1e-4


def test_mei_partner_penalty_hand_value_and_only_the_mei_head_learns_from_it(cache):
    """`loss.mei_partner_weight`: sum over modalities of the mean over x_m's dimensions of the
    summed squared clean-weighted correlations with the partner's MII code, against numpy;
    its gradient reaches the MEI heads only (not the backbones, not the MII heads)."""
    import jax.numpy as jnp

    from jaxmr.tasks.retrieval.disncl import mei_partner_penalty

    config = _config(cache, "smoke,ablation=excl")
    assert config.loss.mei_partner_weight == 1.0
    task = build_task(config)
    batch = task.make_sampler(batch_size=32, seed=0).batch(0)
    params = task.init_fn(jax.random.key(0))
    dims = (batch["images"].shape[-1], task.info["data"].vocab_size)
    nets = Nets(config.model, *dims, task.info["nets"], disentangled=True)
    w = jnp.asarray(np.random.default_rng(0).integers(0, 3, size=32), jnp.float32)

    def penalty(p):
        model = nets.bind(p, "net_a")
        img = model.image_codes(batch["images"])
        txt = model.text_codes(batch["tokens"], batch["lengths"])
        return mei_partner_penalty(model, img, txt, w), (img, txt)

    val, (img, txt) = penalty(params)
    rep = np.repeat(np.arange(32), np.asarray(w).astype(int))
    want = 0.0
    for x, s in ((img["x"], txt["s"]), (txt["x"], img["s"])):
        x, s = np.asarray(x, np.float64)[rep], np.asarray(s, np.float64)[rep]
        k = x.shape[1]
        rho = np.corrcoef(x.T, s.T)[:k, k:]
        want += np.mean(np.sum(rho**2, axis=1))
    np.testing.assert_allclose(float(val), want, rtol=1e-4)
    grads = jax.grad(lambda p: penalty(p)[0])(params)["net_a"]
    for heads in ("image_heads", "text_heads"):
        assert float(jnp.max(jnp.abs(grads[heads]["mei"]["kernel"]))) > 0.0
        assert float(jnp.max(jnp.abs(grads[heads]["mii"]["kernel"]))) == 0.0
    for enc in ("image", "text"):
        assert all(float(jnp.max(jnp.abs(leaf))) == 0.0 for leaf in jax.tree.leaves(grads[enc]))
    # the phase loss adds it with its weight and logs it
    from jaxmr.train.task import StepContext

    ctx = StepContext(step=np.int32(0), epoch=np.int32(0), key=jax.random.key(0), carry={})
    _, aux = task.phases[0].loss_fn(params, batch, ctx)
    assert np.isfinite(aux["mei_partner_corr"]) and float(aux["mei_partner_corr"]) > 0.0


def test_mei_options_keep_the_estimator_only_step_off_the_encoders(cache):
    """With the MEI residual's coefficients and the exclusivity penalty in the encoder
    groups, an estimator-only step still leaves every encoder parameter bit-identical."""
    config = _config(cache, "smoke,ablation=mei_resid", **{"loss.mei_partner_weight": 1.0})
    task = build_task(config)
    batch = task.make_sampler(batch_size=16, seed=0).batch(0)
    state = step_lib.init_state(task, jax.random.key(0), mesh_lib.make_data_mesh(1))
    est_only = Task(**{**task.__dict__, "phases": (task.phases[2],)})
    before = jax.device_get(state)
    after = jax.device_get(
        jax.jit(step_lib.make_train_step(est_only))(state, batch, jax.random.key(2))[0]
    )
    for net in ("net_a", "net_b"):
        assert "mei_decor_coef" in before.params[net]["image_heads"]
        for x, y in zip(
            jax.tree.leaves(before.params[net]), jax.tree.leaves(after.params[net]), strict=True
        ):
            np.testing.assert_array_equal(x, y)
    changed = [
        not np.array_equal(x, y)
        for x, y in zip(
            jax.tree.leaves(before.params["est_net_a"]),
            jax.tree.leaves(after.params["est_net_a"]),
            strict=True,
        )
    ]
    assert any(changed)


@pytest.mark.e2e  # compiles a whole train step (~20 s): make test-e2e and CI run it
def test_exclusive_moments_are_an_exact_running_average(cache):
    """`ablation=excl_resid`: one training step from zero leaves every running moment at
    rate x the batch's moment of the codes of the encoders *before* the step (plain SGD on
    (P - T): no Adam, no clipping) and the gate at its target (0 in warm-up), while the
    heads train; with the gate on, the codes are `exclusive_residual` of the moments turned
    into means and covariances (checked against numpy's centred moments of the batch)."""
    import jax.numpy as jnp

    from jaxmr.losses import exclusive_residual

    config = _config(cache, "smoke,ablation=excl_resid")
    task = build_task(config)
    batch = task.make_sampler(batch_size=64, seed=0).batch(0)
    state = step_lib.init_state(task, jax.random.key(0), mesh_lib.make_data_mesh(1))
    init = jax.device_get(state)
    after, metrics = jax.jit(step_lib.make_train_step(task))(state, batch, jax.random.key(1))
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.device_get(metrics).values())
    rate, n = config.loss.exclusive_stat_rate, 64
    dims = (batch["images"].shape[-1], task.info["data"].vocab_size)
    nets = Nets(config.model, *dims, task.info["nets"], disentangled=True)
    model = nets.bind(init.params, "net_a")
    ci = model.image_codes(batch["images"])
    ct = model.text_codes(batch["tokens"], batch["lengths"])
    x, u, p = (np.asarray(a, np.float64) for a in (ci["x_raw"], ci["u"], ct["s"]))
    h0 = init.params["net_a"]["image_heads"]
    h1 = jax.device_get(after.params["net_a"]["image_heads"])
    np.testing.assert_allclose(h1["stat_count"], rate, rtol=1e-6)
    np.testing.assert_allclose(h1["stat_mean_x"], rate * x.mean(0), atol=1e-6)
    np.testing.assert_allclose(h1["stat_xx"], rate * x.T @ x / n, atol=1e-6)
    np.testing.assert_allclose(h1["stat_xp"], rate * x.T @ p / n, atol=1e-6)
    np.testing.assert_allclose(h1["stat_xu"], rate * x.T @ u / n, atol=1e-5)
    assert float(h1["gate_on"]) == 0.0  # epoch 0 is warm-up
    assert np.abs(h1["mii"]["kernel"] - h0["mii"]["kernel"]).max() > 0  # the heads train
    # gate on, moments of this batch (count 1): s and x~ are exclusive_residual's
    params = jax.tree.map(lambda a: a, init.params)
    heads = params["net_a"]["image_heads"]
    moments = {"stat_count": 1.0, "stat_mean_x": x.mean(0), "stat_mean_u": u.mean(0),
               "stat_mean_p": p.mean(0), "stat_xx": x.T @ x / n, "stat_pp": p.T @ p / n,
               "stat_xp": x.T @ p / n, "stat_xu": x.T @ u / n, "gate_on": 1.0}  # fmt: skip
    for k, v in moments.items():
        heads[k] = jnp.asarray(v, jnp.float32)
    c2 = nets.bind(params, "net_a").image_codes(batch["images"])
    cov = lambda a, b: (a - a.mean(0)).T @ (b - b.mean(0)) / n  # noqa: E731
    mom = dict(mean_x=x.mean(0), cov_xx=cov(x, x), cov_pp=cov(p, p), cov_xp=cov(x, p),
               cov_xu=cov(x, u))  # fmt: skip
    mom = {k: jnp.asarray(v, jnp.float32) for k, v in mom.items()}
    r, x_excl, _ = exclusive_residual(
        jnp.asarray(u, jnp.float32), jnp.asarray(x, jnp.float32), **mom,
        k=config.model.exclusive_k, ridge=config.model.exclusive_ridge,
    )  # fmt: skip
    np.testing.assert_allclose(c2["x"], x_excl, atol=2e-3)
    np.testing.assert_allclose(c2["s"], r / jnp.linalg.norm(r, axis=-1, keepdims=True), atol=2e-3)
    assert np.abs(np.asarray(c2["s"]) - np.asarray(ci["s"])).max() > 1e-2  # the gate bites


def test_clean_weighted_exclusive_moments_are_the_weighted_batch_moments(cache):
    """`loss.exclusive_weighting="clean"`: the batch moments the running averages move to are
    the clean-probability-weighted ones (integer weights: the moments of the batch with each
    pair repeated that often, so weight-0 pairs drop out), and with equal weights they are
    the plain ones; the phase refuses an unknown weighting by its key."""
    import jax.numpy as jnp

    from jaxmr.tasks.retrieval.disncl import exclusive_moments_loss
    from jaxmr.train.task import StepContext

    config = _config(cache, "smoke,ablation=excl_resid")
    task = build_task(config)
    batch = task.make_sampler(batch_size=32, seed=0).batch(0)
    params = task.init_fn(jax.random.key(0))
    dims = (batch["images"].shape[-1], task.info["data"].vocab_size)
    nets = Nets(config.model, *dims, task.info["nets"], disentangled=True)
    model = nets.bind(params, "net_a")
    img = model.image_codes(batch["images"])
    txt = model.text_codes(batch["tokens"], batch["lengths"])
    w = jnp.asarray(np.random.default_rng(1).integers(0, 3, size=32), jnp.float32)

    def targets(weights):
        # the running moments start at 0, so the gradient on each is minus its batch value
        grad = jax.grad(
            lambda p: exclusive_moments_loss(nets.bind(p, "net_a"), img, txt, 0.0, weights)[0]
        )(params)["net_a"]
        return {m: {k: -np.asarray(v) for k, v in grad[f"{m}_heads"].items()
                    if k.startswith("stat_")} for m in ("image", "text")}  # fmt: skip

    rep = np.repeat(np.arange(32), np.asarray(w).astype(int))
    weighted, plain, ones = targets(w), targets(None), targets(jnp.ones(32))
    for m, own, other in (("image", img, txt), ("text", txt, img)):
        x, u, p = (np.asarray(a, np.float64) for a in (own["x_raw"], own["u"], other["s"]))
        for got, idx in ((weighted[m], rep), (plain[m], np.arange(32))):
            xr, ur, pr, n = x[idx], u[idx], p[idx], len(idx)
            np.testing.assert_allclose(got["stat_mean_x"], xr.mean(0), atol=1e-6)
            np.testing.assert_allclose(got["stat_mean_p"], pr.mean(0), atol=1e-6)
            np.testing.assert_allclose(got["stat_xp"], xr.T @ pr / n, atol=1e-6)
            np.testing.assert_allclose(got["stat_xu"], xr.T @ ur / n, atol=1e-5)
            np.testing.assert_allclose(got["stat_pp"], pr.T @ pr / n, atol=1e-6)
        for k in plain[m]:
            np.testing.assert_allclose(ones[m][k], plain[m][k], atol=1e-6)
        assert np.abs(weighted[m]["stat_xp"] - plain[m]["stat_xp"]).max() > 1e-4
    bad = _config(cache, "smoke,ablation=excl_resid", **{"loss.exclusive_weighting": "some"})
    ctx = StepContext(step=np.int32(0), epoch=np.int32(0), key=jax.random.key(0), carry={})
    with pytest.raises(ValueError, match="exclusive_weighting"):
        build_task(bad).phases[0].loss_fn(params, batch, ctx)


def test_real_feature_recipes_build_the_exclusive_residual_at_their_widths():
    """The F30K/COCO/CC152K recipes take the default removal at 3/16 of their 256-d MEI code
    (K = 48, clean-weighted moments); at F30K's widths (2,048-d regions, 1,024-d backbone) the
    network builds and, with the gate on and full-rank running moments (2,048 synthetic rows
    in which u depends on x), gives finite codes that the removal changes."""
    import jax.numpy as jnp

    from configs import disncl_cc152k, disncl_coco, disncl_f30k

    for recipe in (disncl_f30k, disncl_coco, disncl_cc152k):
        config = recipe.get_config()
        assert config.model.mii_decorrelation == "exclusive"
        assert config.model.mei_decorrelation == "none"
        assert config.model.exclusive_k * 16 == config.model.mei_dim * 3
        assert config.loss.exclusive_weighting == "clean"
    nets = Nets(config.model, 2048, 40, ("net_a",), disentangled=True)
    params = nets.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(16, 36, 2048)), jnp.float32)
    before = nets.bind(params, "net_a").image_codes(images)
    x = rng.normal(size=(2048, 256))
    u = x @ rng.normal(size=(256, 256)) / 16 + 0.1 * rng.normal(size=(2048, 256))
    p = x + rng.normal(size=(2048, 256))
    moments = dict(stat_count=1.0, stat_mean_x=x.mean(0), stat_mean_u=u.mean(0),
                   stat_mean_p=p.mean(0), stat_xx=x.T @ x / 2048, stat_pp=p.T @ p / 2048,
                   stat_xp=x.T @ p / 2048, stat_xu=x.T @ u / 2048, gate_on=1.0)  # fmt: skip
    params["net_a"]["image_heads"].update(
        {k: jnp.asarray(v, jnp.float32) for k, v in moments.items()}
    )
    after = nets.bind(params, "net_a").image_codes(images)
    assert after["s"].shape == (16, 256) and after["x"].shape == (16, 256)
    assert all(np.isfinite(np.asarray(after[k])).all() for k in ("s", "x"))
    assert np.abs(np.asarray(after["s"]) - np.asarray(before["s"])).max() > 1e-2


def test_both_decorrelations_at_once_are_refused(cache):
    config = _config(cache, "smoke,ablation=decorr", **{"model.mei_decorrelation": "regress"})
    with pytest.raises(ValueError, match="mei_decorrelation and config.model.mii_decorrelation"):
        build_task(config).init_fn(jax.random.key(0))


def test_disncl_smoke_trains_and_evaluates(cache, tmp_path):
    config = _config(cache, total_steps=40)
    workdir = str(tmp_path / "run")
    out = loop.train_and_evaluate(build_task(config), config, workdir)
    assert out["step"] == 40 and np.isfinite(out["dev/rsum"])
    metrics = evaluate(config, workdir, checkpoint="best")
    for key in ("test/rsum", "test/leak/image_mean", "test_codes/mi_mii_mei", "split/net_a/auc"):
        assert np.isfinite(metrics[key]), key


def test_the_two_decorrelations_are_refused_together_and_the_default_is_the_exclusive_residual():
    get = disncl_synthetic.get_config
    default = get()
    assert default.model.mii_decorrelation == "exclusive"
    assert default.model.mei_decorrelation == "none"
    assert default.model.exclusive_k == 12 and get("smoke").model.exclusive_k == 3
    assert default.loss.exclusive_weighting == "clean"
    for ablation in ("no_reg", "no_dis", "no_mei_resid"):
        model = get(f"ablation={ablation}").model
        assert (model.mii_decorrelation, model.mei_decorrelation) == ("none", "none"), ablation
    assert get("ablation=no_reg").loss.lambda_reg == 0.0
    assert get("ablation=no_mei_resid").loss.lambda_reg == default.loss.lambda_reg
    assert get("ablation=no_club").loss.lambda_reg == 0.0
    assert get("ablation=no_club").model.mii_decorrelation == "exclusive"

    def changed(arg):
        flat = lambda c: flatten(c.to_dict())  # noqa: E731
        new, old = flat(get(arg)), flat(default)
        return {k: new[k] for k in new if new[k] != old[k]}

    # sessions 6-7's default, and the session-6 form of the removal
    assert changed("ablation=mei_resid") == {
        "model.mii_decorrelation": "none",
        "model.mei_decorrelation": "regress",
    }
    assert changed("ablation=excl_resid") == {
        "model.exclusive_k": 24,
        "loss.exclusive_weighting": "all",
    }
    assert changed("ablation=excl_all") == {"loss.exclusive_weighting": "all"}
    for ablation in ("decorr", "predict", "excl_decorr", "excl_resid"):
        config = get(f"smoke,ablation={ablation}")
        assert config.model.mei_decorrelation == "none", ablation
    config = disncl_synthetic.get_config("smoke,ablation=decorr")
    config.model.mei_decorrelation = "regress"
    with pytest.raises(ValueError, match="cannot both be on"):
        build_task(config)
    config.model.mei_decorrelation = "resid"
    with pytest.raises(ValueError, match="config.model.mei_decorrelation must be one of"):
        build_task(config)
