"""The pieces behind the identifiability study: LAPACK-free Jacobian terms, the D > d
candidates, the PCA-initialised linear layer, the shapes benchmark, and the study script."""

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import ivae_synthetic
from jaxmr.data.shapes_task import pca_features, shapes_arrays
from jaxmr.data.synthetic import SyntheticSpec, make_synthetic
from jaxmr.losses import lapack_free
from jaxmr.losses import vae as vae_lib
from jaxmr.losses.flow import residual_flow_jacobian_terms
from jaxmr.models.ivae import ResidualFlow
from jaxmr.tasks import build_task
from jaxmr.tasks.ivae.synthetic import build_ivae, implicit_loss, pca_rotation
from jaxmr.train import loop
from jaxmr.train.task import StepContext

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ctx(key):
    """What the trainer passes a phase's loss at step 0."""
    zero = jnp.zeros((), jnp.int32)
    return StepContext(step=zero, epoch=zero, key=key, carry={})


def _study_module():
    spec = importlib.util.spec_from_file_location(
        "identifiability_study", os.path.join(ROOT, "scripts", "identifiability_study.py")
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("n", [1, 3, 7, 12])  # 12: the fori_loop path above SMALL
def test_log_abs_det_matches_slogdet_values_and_gradients(n):
    a = jax.random.normal(jax.random.key(n), (5, n, n))
    log_abs_det = jax.jit(lapack_free.log_abs_det)  # unjitted, the unrolled LU runs op by op
    np.testing.assert_allclose(
        log_abs_det(a), np.linalg.slogdet(np.asarray(a))[1], rtol=1e-4, atol=1e-4
    )
    # d log|det A| / dA = A^{-T}
    grad = jax.jit(jax.grad(lambda m: lapack_free.log_abs_det(m).sum()))(a)
    np.testing.assert_allclose(
        grad, np.linalg.inv(np.asarray(a)).transpose(0, 2, 1), rtol=1e-3, atol=1e-3
    )
    # Pivoting: a permutation matrix has a zero leading pivot without it.
    perm = jnp.eye(n)[::-1] * 2.0
    np.testing.assert_allclose(log_abs_det(perm), n * np.log(2.0), rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 4), (2, 6), (6, 2), (10, 10)])
def test_spectral_norm_gram_matches_svd(shape):
    jac = jax.random.normal(jax.random.key(1), (3, *shape))
    u, s, vt = np.linalg.svd(np.asarray(jac))
    np.testing.assert_allclose(lapack_free.spectral_norm_gram(jac), s[:, 0], rtol=1e-4)
    grad = jax.grad(lambda j: lapack_free.spectral_norm_gram(j).sum())(jac)
    np.testing.assert_allclose(grad, u[:, :, :1] * vt[:, :1, :], atol=2e-3)
    fn = jax.jit(lapack_free.spectral_norm_gram)
    np.testing.assert_allclose(fn(jac), s[:, 0], rtol=1e-4)


@pytest.mark.parametrize("shapes", [((7, 3, 5), (7, 5, 2)), ((2, 9, 4), (2, 4, 9))])
def test_small_matmul_matches_matmul(shapes):
    a = jax.random.normal(jax.random.key(0), shapes[0])
    b = jax.random.normal(jax.random.key(1), shapes[1])
    np.testing.assert_allclose(lapack_free.small_matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_half_logdet_jjt_of_a_linear_map():
    jac = jnp.array([[[3.0, 0.0, 4.0], [0.0, 2.0, 0.0]]])  # rows orthogonal, norms 5 and 2
    np.testing.assert_allclose(lapack_free.half_logdet_jjt(jac), [np.log(10.0)], rtol=1e-6)


def test_linear_layer_log_det_and_inverse():
    flow = ResidualFlow(4, num_blocks=2, hidden=(8,), init_scale=0.5, linear=True, rngs=nnx.Rngs(0))
    flow.linear_weight[...] = jnp.array(
        [[1.0, 0.5, 0, 0], [0, 2.0, 0, 0], [0.3, 0, 0.5, 0], [0, 0, 0.2, 1.5]]
    )
    flow.linear_bias[...] = jnp.array([0.1, -0.2, 0.3, 0.0])
    y = jax.random.normal(jax.random.key(2), (6, 4))
    z, linear_log_det, blocks = flow.forward_with_blocks(y)
    logdet, _ = residual_flow_jacobian_terms(
        blocks, jax.random.key(0), linear_log_det=linear_log_det
    )
    full = jax.vmap(jax.jacfwd(flow))(y)
    np.testing.assert_allclose(z, flow(y), atol=1e-6)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(np.asarray(full))[1], atol=1e-4)
    np.testing.assert_allclose(flow.inverse(z, num_iters=200), y, atol=1e-4)


def test_pca_rotation_is_orthogonal_and_ordered():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2000, 3)) * np.array([0.1, 3.0, 1.0])
    mean, rot = pca_rotation(y)
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-5)
    var = ((y - mean) @ rot).var(0)
    assert var[0] > var[1] > var[2]
    assert abs(rot[1, 0]) > 0.99  # the largest variance is along axis 1


def _config(**sets):
    config = ivae_synthetic.get_config("smoke")
    config.data.target_dim = 8
    config.model.flow.num_blocks = 2
    config.model.flow.hidden = (16,)
    config.model.target_projection = "none"
    config.update_from_flattened_dict(sets)
    return config


def test_injective_loss_is_prior_plus_half_logdet_of_the_full_map():
    config = _config(**{"model.target_mode": "injective", "model.flow.linear": True})
    task = build_ivae(config)
    params = task.init_fn(jax.random.key(0))
    model = task.info["bind"](params)
    batch = {k: v[:16] for k, v in task.train_arrays.items()}
    x, y = jnp.asarray(batch["x"]), jnp.asarray(batch["y"])
    loss, aux = implicit_loss(model, x, y, jax.random.key(1), 5, config.loss, 1.0, 0.0)
    jac = jax.vmap(jax.jacfwd(lambda v: model.flow(v)[:5]))(y)  # [B, 5, 8]
    gram = np.asarray(jac @ jnp.swapaxes(jac, 1, 2))
    mean, logvar = model.prior(x)
    expected = (
        vae_lib.gaussian_log_prob(model.flow(y)[:, :5], mean, logvar)
        + 0.5 * (np.linalg.slogdet(gram)[1])
    )
    np.testing.assert_allclose(aux["log_likelihood"], np.mean(expected), rtol=1e-4)
    np.testing.assert_allclose(loss, -np.mean(expected), rtol=1e-4)


@pytest.mark.parametrize(
    "sets",
    [
        {"model.target_mode": "injective", "model.target_projection": "pca"},
        pytest.param(
            {
                "model.target_mode": "full",
                "model.flow.linear": True,
                "model.flow.linear_init": "pca",
            },
            marks=pytest.mark.slow,
        ),
        pytest.param(
            {"model.target_mode": "injective", "loss.spectral": "power"}, marks=pytest.mark.slow
        ),
    ],
)
def test_target_dim_above_latent_dim_trains(tmp_path, sets):
    config = _config(**sets)
    config.total_steps = 6
    out = loop.train_and_evaluate(build_task(config), config, str(tmp_path / "run"))
    assert np.isfinite(out["train/loss"]) and 0.0 < out["mcc/mcc_strong"] <= 1.0


def test_pca_linear_init_sets_the_rotation():
    config = _config(**{"model.flow.linear": True, "model.flow.linear_init": "pca"})
    task = build_ivae(config)
    params = task.init_fn(jax.random.key(0))
    w = np.asarray(params["model"]["flow"]["linear_weight"])
    np.testing.assert_allclose(w, pca_rotation(task.train_arrays["y"])[1], atol=1e-6)


def test_auto_projection_for_implicit_only():
    config = _config(**{"model.target_projection": "auto"})
    task = build_ivae(config)
    params = task.init_fn(jax.random.key(0))
    assert params["model"]["flow"]["block_0"]["dense_0"]["kernel"].shape[0] == 5  # R^d flow
    config = _config(**{"model.target_projection": "auto", "model.variant": "ivae"})
    params = build_ivae(config).init_fn(jax.random.key(0))
    last = f"dense_{len(config.model.decoder.hidden)}"  # the decoder's output layer
    assert params["model"]["decoder"][last]["kernel"].shape[1] == 8  # all of R^D


def test_bad_target_mode_is_a_config_error():
    with pytest.raises(ValueError, match="target_mode"):
        build_ivae(_config(**{"model.target_mode": "both"}))


def test_shapes_features_and_training(tmp_path):
    arrays = shapes_arrays(300, seed=0, query_dim=6, target_dim=5)
    assert arrays["x"].shape == (300, 6) and arrays["y"].shape == (300, 5)
    assert arrays["s"].shape == (300, 4) and list(arrays["factor_names"]) == [
        "shape",
        "scale",
        "pos_x",
        "pos_y",
    ]
    np.testing.assert_allclose(arrays["y"].std(0), 1.0, rtol=1e-3)
    feats, basis = pca_features(
        np.zeros((10, 2, 2, 3), np.uint8) + np.arange(10)[:, None, None, None].astype(np.uint8),
        dim=1,
    )
    assert feats.shape == (10, 1) and basis["components"].shape == (1, 12)

    config = ivae_synthetic.get_config("smoke,benchmark=shapes")
    config.data.shapes.num_examples = 400
    config.data.shapes.target_dim = 6
    config.data.shapes.query_dim = 8
    config.model.flow.num_blocks = 2
    config.model.flow.hidden = (16,)
    config.total_steps = 4
    out = loop.train_and_evaluate(build_task(config), config, str(tmp_path / "shapes"))
    assert np.isfinite(out["train/loss"]) and 0.0 < out["mcc/mcc_strong"] <= 1.0


def test_study_grid_tables_and_one_run(tmp_path):
    study = _study_module()
    args = study.parse_args([f"--workdir={tmp_path}", "--quick", "--jobs=1"])
    jobs = study.build_jobs(args)
    assert len(jobs) == 3 * len(study.QUICK_MODELS) * 2  # 3 settings x models x 2 seeds
    assert {j["extra"]["total_steps"] for j in jobs} == {2000}

    job = dict(
        jobs[0], extra={"total_steps": 3, "data.num_segments": 4, "data.points_per_segment": 300}
    )
    row = study.run_one(job)
    assert row["model"] == jobs[0]["model"] and 0 <= row["mcc_strong"] <= 1
    assert {"dci_d", "dci_c", "dci_i", "mig"} <= set(row)
    assert study.run_one(job) == row  # read back, not retrained

    rows = [dict(row, seed=s, mcc_strong=v) for s, v in ((0, 0.5), (1, 0.7))]
    table = study.markdown_tables(rows)
    assert "0.600 ± 0.100" in table
    study.write_outputs(rows + [dict(row, setting="L3_d5_D5", depth=3)], str(tmp_path))
    assert os.path.exists(tmp_path / "results.csv")
    with open(tmp_path / "mcc_vs_depth.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_study_published_benchmark_jobs_and_tables(tmp_path):
    study = _study_module()
    args = study.parse_args(
        [f"--workdir={tmp_path}", "--benchmark=published", "--models=ivae,iivae", "--seeds=0"]
    )
    jobs = study.build_jobs(args)
    assert {j["setting"] for j in jobs} == {"L1_d5_D5", "L3_d5_D5"} and len(jobs) == 4
    for j in jobs:
        assert j["benchmark"] == "published"
        assert j["setting_overrides"]["data.repeat_linearity"] is True
        assert j["setting_overrides"]["data.query_kind"] == "onehot"
        # Never the same run directory as the synthetic setting of the same name.
        assert os.sep + "published_L" in j["workdir"]
    row = dict(benchmark="published", setting="L3_d5_D5", depth=3, d=5, D=5, model="ivae")
    rows = [dict(row, seed=0, mcc_strong=0.9, seconds=1.0)]
    rows.append(dict(rows[0], benchmark="synthetic", mcc_strong=0.5))
    assert "published-style data" in study.markdown_tables(rows)
    header = study.summary_table(rows).splitlines()[0]
    assert "L3_d5_D5 (published)" in header and header.count("L3_d5_D5") == 2


def test_projection_warning_flags_a_flat_spectrum():
    from jaxmr.tasks.ivae.synthetic import projection_warning

    assert projection_warning(np.array([9.0, 4.0, 1.0, 0.5]), 2) is None  # 4 / 1: a gap
    msg = projection_warning(np.ones(16), 4)  # whitened features: no gap
    assert msg and "lambda_4/lambda_5 = 1.00" in msg and "target_projection='none'" in msg
    assert projection_warning(np.ones(3), 3) is None  # nothing dropped
    # The synthetic benchmark's targets have a clear gap at d (no false alarm).
    data = make_synthetic(SyntheticSpec(num_segments=10, points_per_segment=500, target_dim=20))
    _, _, var = pca_rotation(data["y"], with_variances=True)
    assert projection_warning(var, 5) is None


def test_explicit_beta_tc_is_the_default_and_matches_the_loss_function():
    config = _config(**{"model.variant": "ivae"})
    assert config.loss.elbo == "beta_tc" and tuple(config.loss.tc.values()) == (100, 1, 0, 10)
    task = build_ivae(config)
    params = task.init_fn(jax.random.key(0))
    batch = {k: jnp.asarray(v[:32]) for k, v in task.train_arrays.items()}
    loss, aux = task.phases[0].loss_fn(params, batch, _ctx(jax.random.key(1)))
    # the same sample through the pure function, with N = the dataset size
    model = task.info["bind"](params)
    enc_in = jnp.concatenate([batch["y"], batch["x"]], -1)
    mean_q, logvar_q = model.encoder(enc_in)
    z = vae_lib.reparameterize(jax.random.key(1), mean_q, logvar_q)
    mean_p, logvar_p = model.prior(batch["x"])
    value, _ = vae_lib.beta_tc_elbo(
        batch["y"],
        model.decoder(z),
        z,
        obs_logvar=config.model.obs_logvar,
        mean_q=mean_q,
        logvar_q=logvar_q,
        mean_p=mean_p,
        logvar_p=logvar_p,
        dataset_size=len(task.train_arrays["y"]),
    )
    np.testing.assert_allclose(loss, -np.mean(value), rtol=1e-5)
    assert {"mutual_info", "total_correlation", "dimwise_kl", "mc_elbo"} <= set(aux)
    analytic = build_ivae(_config(**{"model.variant": "ivae", "loss.elbo": "analytic"}))
    _, aux = analytic.phases[0].loss_fn(params, batch, _ctx(jax.random.key(1)))
    assert "kl" in aux and "total_correlation" not in aux
    with pytest.raises(ValueError, match="loss.tc"):
        build_ivae(_config(**{"model.variant": "vae", "loss.beta": 4.0}))
    with pytest.raises(ValueError, match="loss.elbo"):
        build_ivae(_config(**{"model.variant": "vae", "loss.elbo": "mc"}))


def test_study_data_draw_axis_and_draws_table(tmp_path):
    study = _study_module()
    args = study.parse_args(
        [
            f"--workdir={tmp_path}",
            "--models=ivae,ivae_elbo",
            "--settings=L3_d5_D5",
            "--seeds=0,1",
            "--data_seeds=1,2,3",
            "--budget=config",
        ]
    )
    jobs = study.build_jobs(args)
    assert len(jobs) == 2 * 3 * 2 and {j["data_seed"] for j in jobs} == {1, 2, 3}
    assert len({j["workdir"] for j in jobs}) == len(jobs)  # a directory per draw and model
    assert all(f"L3_d5_D5_ds{j['data_seed']}" in j["workdir"] for j in jobs)
    # the exported arrays are the draws the runs train on
    paths = study.export_npz(
        [j for j in jobs if j["model"] == "ivae" and j["seed"] == 0][:2], str(tmp_path)
    )
    a, b = (np.load(p) for p in paths)
    assert a["y"].shape == (40000, 5) and not np.allclose(a["y"], b["y"])
    spec = SyntheticSpec(mixing_layers=3, seed=2)
    np.testing.assert_allclose(b["y"], make_synthetic(spec)["y"], rtol=1e-6)
    row = dict(benchmark="synthetic", setting="L3_d5_D5", depth=3, d=5, D=5, seconds=1.0)
    rows = [
        dict(row, model=m, data_seed=k, seed=s, mcc_strong=v + 0.1 * s)
        for m, base in (("ivae", 0.5), ("iivae", 0.9))
        for k, v in ((1, base), (2, base - 0.2), (3, base + 0.05))
        for s in (0, 1)
    ]
    table = study.draws_table(rows)
    # iivae per-draw means 0.95, 0.75, 1.00: median 0.950, worst 0.750 on draw 2
    assert "| iivae | 0.950 | 0.750 | 1.000 | 0.950 | 0.750 (2) | 6 |" in table


def test_auto_projection_without_a_spectral_gap_trains_the_full_flow():
    from jaxmr.tasks.ivae.synthetic import auto_projection

    config = ivae_synthetic.get_config("smoke,benchmark=shapes")
    config.data.shapes.num_examples = 400
    config.data.shapes.target_dim = 6
    config.data.shapes.query_dim = 8
    config.model.flow.num_blocks = 2
    config.model.flow.hidden = (16,)
    task = build_ivae(config)  # whitened features: every direction has variance 1
    mode, note = auto_projection(config, task.train_arrays["y"])
    assert mode == "full_linear" and "no spectral gap" in note
    params = task.init_fn(jax.random.key(0))["model"]
    assert params["flow"]["block_0"]["dense_0"]["kernel"].shape[0] == 6  # all of R^D
    np.testing.assert_allclose(
        params["flow"]["linear_weight"], pca_rotation(task.train_arrays["y"])[1], atol=1e-6
    )
    assert params["extra_logvar"].shape == (2,)  # the D - d extra outputs' Gaussian
    assert config.model.target_mode == "full" and not config.model.flow.linear  # not mutated
    # with a gap (the synthetic benchmark at D = 8) auto keeps the fixed projection
    gap_cfg = _config(**{"model.target_projection": "auto"})
    y = build_ivae(gap_cfg).train_arrays["y"]
    assert auto_projection(gap_cfg, y) == ("pca", None)
    assert auto_projection(_config(**{"model.variant": "ivae"}), y) == ("none", None)


def test_inverse_round_trip_on_trained_parameters(tmp_path):
    config = ivae_synthetic.get_config("smoke")
    config.model.flow.num_blocks = 3
    config.model.flow.hidden = (16,)
    config.total_steps = 30
    task = build_task(config)
    loop.train_and_evaluate(task, config, str(tmp_path / "run"))
    _, state, _ = loop.restore_state(task, config, str(tmp_path / "run"))
    model = task.info["bind"](state.params)
    y = jnp.asarray(task.train_arrays["y"][:64])
    z = model.flow(y)
    assert float(jnp.max(jnp.abs(model.flow.inverse(z) - y))) < 1e-4
    # too few fixed-point iterations leave a visible error: the test can fail
    assert float(jnp.max(jnp.abs(model.flow.inverse(z, num_iters=1) - y))) > 1e-4


def test_published_optimiser_model_keeps_its_budget(tmp_path):
    # `ivae_pubopt` is `ivae` with the config's `recipe=published` optimiser, whatever --budget
    study = _study_module()
    recipe = ivae_synthetic.PUBLISHED_RECIPE
    assert study.MODELS["ivae_pubopt"] == ("variant=ivae", recipe)
    assert study.PUBLISHED_OPTIM == recipe
    for budget in ("main", "config"):
        args = study.parse_args(
            [f"--workdir={tmp_path}", "--models=ivae_pubopt", "--settings=L3_d5_D5",
             "--seeds=0", f"--budget={budget}"]
        )  # fmt: skip
        (job,) = study.build_jobs(args)
        assert job["model"] == "ivae_pubopt" and job["budget"] == budget
    assert "ivae_pubopt" in study.OWN_BUDGET
