"""The iIVAE family as one task (docs/methods.md §1).

Variants (`config.model.variant`):
- `implicit` (default, iIVAE [R]): invertible residual embedding g of the target modality,
  exact change-of-variables likelihood with the conditional prior p(z|x), and the Jacobian
  spectral-norm penalty that keeps every residual branch contractive:
      maximise  log p(g(y) | x) + log|det J_g(y)| - gamma * sum_k relu(||J_hk|| - c)^2
- `ivae`: explicit-decoder iVAE, q(z|x,y), decoder f(z), prior p(z|x) (u := x).
- `vae`: q(z|y), decoder, prior N(0, I).
- `isometry`: documented ablation: MLP embedding g, -log p(g(y)|x) + gamma ||J J^T - I||_F^2
  (treats g as an isometry so the volume term vanishes; docs/methods.md §1 says why it
  stays an ablation).
`ivae` and `vae` train by `config.loss.elbo`: `beta_tc` (default) is the published iVAE
objective, the beta-TC decomposition of the one-sample ELBO weighted by `config.loss.tc`
(a, b, c, d) with minibatch-weighted log q(z) over the N training examples; `analytic` is the
plain ELBO (one sample, analytic KL) whose KL `config.loss.beta` weights (beta-VAE /
beta-iVAE). For `implicit`, `config.loss.beta` weights the prior term (beta = 1 is the exact
likelihood).

For target dimension D > d, `config.model.target_mode` picks the candidate of docs/methods.md §1:
- `full` (i): the full-dimensional flow F on R^D; the first d outputs get p(z|x), the other
  D - d a learned per-dimension Gaussian N(0, diag v); exact likelihood with log|det J_F|.
- `injective` (ii): g = first d outputs of the same flow, a map R^D -> R^d;
      maximise  log p(g(y) | x) + 1/2 log det(J_g J_g^T) - gamma * R_J(y),
  the injective-flow density on the data manifold (J_g by d reverse-mode passes).
  With `config.model.target_projection="pca"`, g = F o P with P the fixed top-d principal
  directions of the targets (orthonormal rows): the volume term is then exactly
  log |det J_F| of a square flow on R^d, and the normal directions of the data manifold,
  along which noise-free data have no spread, cannot inflate it. (For the other variants
  the same projection is a control: they then see the same d projected targets.) `auto`
  (the default) projects for `implicit` only, and only where the targets' spectrum has a gap
  at d (lambda_d / lambda_{d+1} >= 1.5); without one it trains the full flow with a dense
  first layer initialised at the PCA rotation (`auto_projection`); `none` never projects.
In all, z = g(y) = F(y)_{:d}. `config.model.flow.linear` adds a learnable dense layer first
(exact log det), initialised at the identity or (`linear_init="pca"`) at the PCA rotation of
the targets, which puts the top-d principal directions on the prior's coordinates.

`config.data.benchmark`: `synthetic` (fully known factors) or `shapes` (rendered pairs with
partially known factors, PCA features of both modalities; `jaxmr.data.shapes_task`). See
docs/ivae.md for every choice and the numbers behind the defaults.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmr.data.arrays import load_paired_npz
from jaxmr.data.shapes_task import shapes_arrays
from jaxmr.data.synthetic import SyntheticSpec, make_synthetic_with_mixing
from jaxmr.losses import flow as flow_lib
from jaxmr.losses import jacobian as jac_lib
from jaxmr.losses import lapack_free
from jaxmr.losses import vae as vae_lib
from jaxmr.models.ivae import MLP, ConditionalPrior, GaussianEncoder, ResidualFlow
from jaxmr.models.pure import PureModule
from jaxmr.tasks.ivae.evaluators import MCCEvaluator
from jaxmr.tasks.ivae.traversal import TraversalEvaluator
from jaxmr.train.optim import build_optimizer
from jaxmr.train.task import Phase, Task

VARIANTS = ("implicit", "ivae", "vae", "isometry")
TARGET_MODES = ("full", "injective")
BENCHMARKS = ("synthetic", "shapes")
ELBOS = ("beta_tc", "analytic")


def load_data(data_cfg) -> dict[str, np.ndarray]:
    """Synthetic benchmark, rendered shapes or a user's `.npz`, as float32 `x`, `y` and (if
    known) `s`."""
    return load_data_with_maps(data_cfg)[0]


def load_data_with_maps(data_cfg) -> tuple[dict[str, np.ndarray], dict]:
    """`load_data` and what maps a target back to something one can look at (for the
    traversal evaluator): `{"pixels": basis, "size": S}` for shapes (the target's PCA basis,
    `jaxmr.data.shapes_task.pca_images`), `{"unmix": matrices, "activation", "slope"}` for the
    generated synthetic data (`jaxmr.data.synthetic.unmix`), `{}` for a user's `.npz`."""
    benchmark = data_cfg.get("benchmark", "synthetic")
    if benchmark not in BENCHMARKS:
        raise ValueError(f"config.data.benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    if benchmark == "shapes":
        sh = data_cfg.shapes
        arrays = shapes_arrays(
            sh.num_examples,
            seed=sh.seed,
            size=sh.size,
            shared=tuple(sh.shared),
            noise_std=sh.noise_std,
            query_dim=sh.query_dim,
            target_dim=sh.target_dim,
        )
        basis = {k: arrays[f"y_pca_{k}"] for k in ("mean", "components", "scale")}
        return {k: arrays[k] for k in ("x", "y", "s")}, {"pixels": basis, "size": sh.size}
    if data_cfg.path:
        arrays = load_paired_npz(
            data_cfg.path,
            query_key=data_cfg.query_key,
            target_key=data_cfg.target_key,
            factors_key=data_cfg.factors_key or None,
        )
        return arrays, {}
    fields = {f.name for f in SyntheticSpec.__dataclass_fields__.values()}
    spec = SyntheticSpec(**{k: v for k, v in data_cfg.items() if k in fields})
    arrays, mats = make_synthetic_with_mixing(spec)
    maps = {"unmix": mats, "activation": spec.activation, "slope": spec.slope}
    return {k: arrays[k] for k in ("x", "y", "s")}, maps


class IVAEModel(nnx.Module):
    """Holds the sub-modules of the selected variant."""

    def __init__(self, cfg, x_dim: int, y_dim: int, *, rngs: nnx.Rngs):
        m = cfg.model
        d = m.latent_dim
        self.variant = m.variant
        self.target_mode = m.get("target_mode", "full")
        prior_mean = m.prior.mean
        conditional = m.prior.conditional
        if m.variant == "vae":
            conditional, prior_mean = False, "zero"
        if m.variant != "vae":
            self.prior = ConditionalPrior(
                x_dim,
                d,
                hidden=tuple(m.prior.hidden),
                activation=m.prior.activation,
                mean=prior_mean,
                conditional=conditional,
                rngs=rngs,
            )
        if m.variant == "implicit":
            self.flow = ResidualFlow(
                y_dim,
                num_blocks=m.flow.num_blocks,
                hidden=tuple(m.flow.hidden),
                activation=m.flow.activation,
                affine=m.flow.affine,
                init_scale=m.flow.init_scale,
                linear=m.flow.get("linear", False),
                rngs=rngs,
            )
            if y_dim > d and self.target_mode == "full":
                self.extra_logvar = nnx.Param(jnp.zeros((y_dim - d,)))
        elif m.variant == "isometry":
            self.embed = MLP(
                y_dim, tuple(m.encoder.hidden), d, activation=m.encoder.activation, rngs=rngs
            )
        else:
            enc_in = y_dim + (x_dim if m.variant == "ivae" else 0)
            self.encoder = GaussianEncoder(
                enc_in,
                d,
                hidden=tuple(m.encoder.hidden),
                activation=m.encoder.activation,
                split_heads=m.encoder.get("split_heads", False),
                rngs=rngs,
            )
            self.decoder = MLP(
                d, tuple(m.decoder.hidden), y_dim, activation=m.decoder.activation, rngs=rngs
            )


def ivae_params(cfg, x_dim: int, y_dim: int, *, linear_init=None):
    """(init_fn, bind) of the `IVAEModel` of `cfg` as the trainer's `model` group: `init_fn(key)`
    gives `{"model": pure dict}`, `bind(params)` the module holding `params["model"]`.
    `linear_init` (mean `[D]`, rotation `[D, D]`) sets the flow's first linear layer."""

    def make(rngs):
        model = IVAEModel(cfg, x_dim, y_dim, rngs=rngs)
        if linear_init is not None:
            model.flow.linear_bias[...] = jnp.asarray(linear_init[0])
            model.flow.linear_weight[...] = jnp.asarray(linear_init[1])
        return model

    module = PureModule(make)
    return (lambda key: {"model": module.init(key)}), (lambda params: module.bind(params["model"]))


def ivae_task(name, cfg, init_fn, bind, loss_fn, predict_fn, arrays, evaluators, **info) -> Task:
    """A task of the iIVAE family: the `model` group of `ivae_params` trained by one phase with
    the optimiser of `cfg`; `info` has the dimensions of `arrays`, the number of training
    examples, `bind`, and the entries given."""
    return Task(
        name=name,
        init_fn=init_fn,
        optimizers={
            "model": build_optimizer(
                cfg.optim,
                cfg.schedule,
                cfg.total_steps,
                steps_per_epoch=len(arrays["y"]) // int(cfg.batch_size),
            )
        },
        phases=(Phase("train", ("model",), loss_fn),),
        predict_fn=predict_fn,
        train_arrays=arrays,
        evaluators=evaluators,
        info={
            "x_dim": arrays["x"].shape[1],
            "y_dim": arrays["y"].shape[1],
            "latent_dim": int(cfg.model.latent_dim),
            "num_examples": len(arrays["y"]),
            "bind": bind,
        }
        | info,
    )


def _check(cfg, arrays):
    m = cfg.model
    if m.variant not in VARIANTS:
        raise ValueError(f"config.model.variant must be one of {VARIANTS}, got {m.variant!r}")
    y_dim = arrays["y"].shape[1]
    if "s" in arrays and arrays["s"].shape[1] != m.latent_dim:
        k = arrays["s"].shape[1]
        from_file = cfg.data.path and cfg.data.benchmark == "synthetic"
        source = f"{cfg.data.factors_key!r} in {cfg.data.path}" if from_file else "the data"
        raise ValueError(
            f"config.model.latent_dim={m.latent_dim} but the true factors ({source}) have {k} "
            f"columns, so MCC would score {m.latent_dim} latents against {k} factors; set "
            f"--config.model.latent_dim={k}"
        )
    if m.latent_dim > y_dim:
        raise ValueError(
            f"config.model.latent_dim ({m.latent_dim}) exceeds the target dimension ({y_dim})"
        )
    if m.get("target_mode", "full") not in TARGET_MODES:
        raise ValueError(
            f"config.model.target_mode must be one of {TARGET_MODES}, got {m.target_mode!r}"
        )
    if m.get("target_projection", "none") not in ("auto", "none", "pca"):
        raise ValueError(
            "config.model.target_projection must be 'auto', 'none' or 'pca', "
            f"got {m.target_projection!r}"
        )
    if m.flow.get("linear_init", "identity") not in ("identity", "pca"):
        raise ValueError(
            f"config.model.flow.linear_init must be 'identity' or 'pca', got {m.flow.linear_init!r}"
        )
    elbo_kind = cfg.loss.get("elbo", "analytic")
    if elbo_kind not in ELBOS:
        raise ValueError(f"config.loss.elbo must be one of {ELBOS}, got {elbo_kind!r}")
    if m.variant in ("ivae", "vae") and elbo_kind == "beta_tc" and cfg.loss.beta != 1.0:
        raise ValueError(
            f"config.loss.beta={cfg.loss.beta} only weights the analytic ELBO; with "
            "config.loss.elbo='beta_tc' set the weights config.loss.tc.{a,b,c,d} instead"
        )
    if cfg.loss.logdet not in ("exact", "series"):
        raise ValueError(f"config.loss.logdet must be 'exact' or 'series', got {cfg.loss.logdet!r}")
    if cfg.loss.spectral not in ("exact", "power"):
        raise ValueError(
            f"config.loss.spectral must be 'exact' or 'power', got {cfg.loss.spectral!r}"
        )
    if cfg.loss.jacobian_mode not in jac_lib.JACOBIAN_MODES:
        raise ValueError(
            f"config.loss.jacobian_mode must be one of {jac_lib.JACOBIAN_MODES}, "
            f"got {cfg.loss.jacobian_mode!r}"
        )


def build_ivae(cfg) -> Task:
    arrays, maps = load_data_with_maps(cfg.data)
    _check(cfg, arrays)
    x_dim, y_dim = arrays["x"].shape[1], arrays["y"].shape[1]
    d = cfg.model.latent_dim
    variant = cfg.model.variant
    loss_cfg = cfg.loss
    beta, gamma = float(loss_cfg.beta), float(loss_cfg.gamma)
    tc = None
    if loss_cfg.get("elbo", "analytic") == "beta_tc":
        tc = {k: float(loss_cfg.tc[k]) for k in "abcd"} | {"dataset_size": len(arrays["y"])}

    # Fixed projection of the targets onto their top-d principal directions (orthonormal
    # rows P). For `implicit` this is the injective form g = F o P: 1/2 log det(J_g J_g^T) =
    # log |det J_F| exactly, with F a square flow on R^d. For the other variants it is a
    # control: the same projected targets, to separate the projection from the objective.
    projection = None
    mode = cfg.model.get("target_projection", "none")
    if mode == "auto":
        mode, note = auto_projection(cfg, arrays["y"])
        if note:
            print(f"model.target_projection='auto': {note}", file=sys.stderr, flush=True)
        if mode == "full_linear":  # no spectral gap: the flow on all of R^D (candidate (i))
            cfg = cfg.copy_and_resolve_references()
            with cfg.unlocked():
                cfg.model.target_mode = "full"
                cfg.model.flow.linear = True
                cfg.model.flow.linear_init = "pca"
            mode = "none"
    if y_dim > d and mode == "pca":
        mean, rotation, variances = pca_rotation(arrays["y"], with_variances=True)
        projection = (jnp.asarray(mean), jnp.asarray(rotation[:, :d]))
        warning = projection_warning(variances, d)
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    target_dim = d if projection is not None else y_dim

    def project(y):
        if projection is None:
            return y
        return (y - projection[0]) @ projection[1]

    def unproject(v):  # the transpose of `project`: exact on the kept directions only
        if projection is None:
            return v
        return v @ projection[1].T + projection[0]

    linear_init = None
    if variant == "implicit" and cfg.model.flow.get("linear", False):
        if cfg.model.flow.get("linear_init", "identity") == "pca":
            linear_init = pca_rotation(np.asarray(project(arrays["y"])))
    init_fn, bind = ivae_params(cfg, x_dim, target_dim, linear_init=linear_init)

    def loss_fn(params, batch, ctx):
        key = ctx.key
        model = bind(params)
        x, y = batch["x"], project(batch["y"])
        if variant == "implicit":
            return implicit_loss(model, x, y, key, d, loss_cfg, beta, gamma)
        if variant == "isometry":
            return isometry_loss(model, x, y, key, loss_cfg, gamma)
        return _explicit_loss(model, x, y, key, variant, cfg.model.obs_logvar, beta, tc)

    def predict_fn(params, batch):
        model = bind(params)
        y = project(batch["y"])
        if variant == "implicit":
            z = model.flow(y)[..., :d]
        elif variant == "isometry":
            z = model.embed(y)
        else:
            enc_in = jnp.concatenate([y, batch["x"]], -1) if variant == "ivae" else y
            z = model.encoder(enc_in)[0]
        return {"z": z}

    evaluators = []
    if "s" in arrays and cfg.evals.mcc.every_steps >= 0:
        evaluators.append(
            MCCEvaluator(
                "mcc",
                predict_fn,
                arrays,
                every_steps=cfg.evals.mcc.every_steps,
                max_examples=cfg.evals.mcc.max_examples,
                seed=cfg.evals.mcc.seed,
            )
        )
    traversal = _traversal_evaluator(cfg, arrays, maps, bind, project, unproject, projection)
    if traversal is not None:
        evaluators.append(traversal)
    return ivae_task(
        "ivae", cfg, init_fn, bind, loss_fn, predict_fn, arrays, evaluators, variant=variant
    )


def _traversal_evaluator(cfg, arrays, maps, bind, project, unproject, projection):
    """The traversal evaluator (`config.evals.traversal`, every_steps < 0: off), or None with
    a message on stderr where the variant has nothing that decodes a latent."""
    tcfg = cfg.evals.traversal
    if tcfg.every_steps < 0:
        return None
    if int(tcfg.cost_points) < 1:
        raise ValueError(f"config.evals.traversal.cost_points must be >= 1, got {tcfg.cost_points}")
    if cfg.model.variant not in ("implicit", "ivae", "vae"):
        print(
            f"traversal figures skipped: model.variant={cfg.model.variant!r} has neither an "
            "invertible embedding nor a decoder to map a moved latent back to the target",
            file=sys.stderr,
            flush=True,
        )
        return None
    names = None
    if cfg.data.get("benchmark", "synthetic") == "shapes":
        names = tuple(cfg.data.shapes.shared)
    return TraversalEvaluator(
        "traversal",
        bind=bind,
        variant=cfg.model.variant,
        latent_dim=cfg.model.latent_dim,
        arrays=arrays,
        maps=maps,
        project=project,
        unproject=unproject,
        lossy=projection is not None,
        every_steps=tcfg.every_steps,
        num_points=tcfg.num_points,
        num_steps=tcfg.num_steps,
        span=tcfg.span,
        num_iters=tcfg.num_iters,
        max_examples=tcfg.max_examples,
        cost_points=tcfg.cost_points,
        seed=tcfg.seed,
        factor_names=names,
    )


def pca_rotation(y: np.ndarray, *, max_rows: int = 20000, with_variances: bool = False):
    """(mean `[D]`, orthogonal `[D, D]` whose columns are the principal directions of `y`,
    largest variance first[, the variances along them `[D]`]): the PCA initialisation of the
    flow's first linear layer and the fixed projection. Being orthogonal, the rotation has
    log |det| = 0, so it changes where the flow starts, not the model."""
    rows = y[:max_rows].astype(np.float64)
    mean = rows.mean(0)
    _, sv, vt = np.linalg.svd(rows - mean, full_matrices=False)
    out = (mean.astype(np.float32), vt.T.astype(np.float32))
    if with_variances:
        return out + ((sv**2 / max(len(rows) - 1, 1)).astype(np.float32),)
    return out


def auto_projection(cfg, y: np.ndarray, *, min_gap: float = 1.5) -> tuple[str, str | None]:
    """What `target_projection="auto"` does: (`pca` | `none` | `full_linear`, a note or None).

    Explicit variants: `none`. `implicit` with D > d: the fixed top-d projection (`pca`) only
    where the spectrum has a gap at d (lambda_d / lambda_{d+1} >= `min_gap`); without one, as
    for whitened features, the top-d directions are an arbitrary choice that can discard the
    factors, and `full_linear` trains the flow on all D dimensions (`target_mode="full"`) with a
    learnable dense first layer initialised at the PCA rotation, which can turn towards the
    factors (docs/ivae.md, "Choosing the D > d form")."""
    d = cfg.model.latent_dim
    if cfg.model.variant != "implicit" or y.shape[1] <= d:
        return "none", None
    _, _, variances = pca_rotation(y, with_variances=True)
    warning = projection_warning(variances, d, min_gap=min_gap)
    if warning is None:
        return "pca", None
    gap = float(variances[d - 1] / max(float(variances[d]), 1e-30))
    return "full_linear", (
        f"no spectral gap at d = {d} (lambda_{d}/lambda_{d + 1} = {gap:.2f} < {min_gap}): "
        f"the flow on all {y.shape[1]} dimensions with a PCA-initialised dense first layer "
        "instead of the fixed top-d projection"
    )


def projection_warning(variances: np.ndarray, d: int, *, min_gap: float = 1.5) -> str | None:
    """A message when the top-d principal directions are not clearly separated from the rest
    (variance ratio lambda_d / lambda_{d+1} below `min_gap`), else None.

    The fixed projection keeps d directions chosen by variance alone. On targets with no
    spectral gap, e.g. whitened features (every direction variance 1), that choice is
    arbitrary and can discard the factors: on the shapes benchmark's unit-variance PCA
    features the top-4 directions explain the shared factors with linear R^2 0.01-0.19
    (docs/results.md)."""
    var = np.asarray(variances, np.float64)
    if len(var) <= d or var[d] <= 0:
        return None
    gap = float(var[d - 1] / var[d])
    if gap >= min_gap:
        return None
    kept = float(var[:d].sum() / var.sum())
    return (
        f"model.target_projection keeps the top {d} of {len(var)} principal directions of the "
        f"targets, but they are not separated from the rest (variance ratio "
        f"lambda_{d}/lambda_{d + 1} = {gap:.2f}, {kept:.0%} of the variance kept): the "
        "projection may discard the factors. Whitened or otherwise flat-spectrum targets need "
        "model.target_projection='none' (a flow on all D dimensions)."
    )


def implicit_loss(model, x, y, key, d, loss_cfg, beta, gamma):
    """The implicit decoder's loss on one batch: -(beta log p(z|x) + log|det J_g(y)|) plus
    gamma x the Lipschitz hinge on every flow branch; z = g(y) (first d outputs; the D - d
    extra ones get an isotropic Gaussian, or the injective volume replaces log det).

    Shared by the synthetic/shapes task and the Recipe1M task (docs/ivae.md). Returns the
    scalar loss and the per-term means logged by the trainer.
    """
    injective = getattr(model, "target_mode", "full") == "injective" and y.shape[-1] > d
    z_full, linear_log_det, blocks = model.flow.forward_with_blocks(y)
    logdet, sigmas = flow_lib.residual_flow_jacobian_terms(
        blocks,
        key,
        linear_log_det=linear_log_det,
        logdet="none" if injective else loss_cfg.logdet,
        spectral=loss_cfg.spectral,
        jacobian_mode=loss_cfg.jacobian_mode,
        power_iters=loss_cfg.power_iters,
        series_terms=loss_cfg.series_terms,
        probes=loss_cfg.probes,
    )
    mean, logvar = model.prior(x)
    z = z_full[:, :d]
    log_prior = vae_lib.gaussian_log_prob(z, mean, logvar)
    if injective:
        # Volume of g = F_{:d} on the data manifold: 1/2 log det(J_g J_g^T), J_g [d, D] by d
        # reverse-mode passes through the whole flow (cheap for d << D).
        jac = jac_lib.batched_jacobian(lambda v: model.flow(v)[:d], y, mode="rev")
        logdet = lapack_free.half_logdet_jjt(jac)
    elif z_full.shape[1] > d:
        log_prior = log_prior + flow_lib.isotropic_log_prob(z_full[:, d:], model.extra_logvar[...])
    loglik = beta * log_prior + logdet
    penalty = jac_lib.lipschitz_hinge_penalty(sigmas, bound=loss_cfg.lipschitz_bound)
    loss = -jnp.mean(loglik) + gamma * jnp.mean(penalty)
    aux = {
        "log_likelihood": jnp.mean(log_prior + logdet),
        "log_prior": jnp.mean(log_prior),
        "log_det": jnp.mean(logdet),
        "lipschitz_penalty": jnp.mean(penalty),
        "max_branch_sigma": jnp.max(sigmas),
        "frac_non_contractive": jnp.mean((sigmas >= 1.0).astype(jnp.float32)),
    }
    return loss, aux


def isometry_loss(model, x, y, key, loss_cfg, gamma):
    """The isometry ablation's loss: -log p(g(y)|x) plus gamma x a penalty pushing
    J_g J_gᵀ to the identity (no volume term); shared like `implicit_loss`."""
    z = model.embed(y)
    mean, logvar = model.prior(x)
    log_prior = vae_lib.gaussian_log_prob(z, mean, logvar)
    if loss_cfg.isometry_estimator == "exact":
        jac = jac_lib.batched_jacobian(model.embed, y, mode=loss_cfg.jacobian_mode)
        pen = jac_lib.orthogonality_penalty(jac)
    else:
        keys = jax.random.split(key, y.shape[0])
        pen = jax.vmap(
            lambda v, k: jac_lib.orthogonality_penalty_probe(
                model.embed, v, k, n_probes=loss_cfg.probes
            )
        )(y, keys)
    loss = -jnp.mean(log_prior) + gamma * jnp.mean(pen)
    return loss, {"log_prior": jnp.mean(log_prior), "isometry_penalty": jnp.mean(pen)}


def _explicit_loss(model, x, y, key, variant, obs_logvar, beta, tc=None):
    enc_in = jnp.concatenate([y, x], -1) if variant == "ivae" else y
    mean_q, logvar_q = model.encoder(enc_in)
    if variant == "ivae":
        mean_p, logvar_p = model.prior(x)
    else:
        mean_p = logvar_p = jnp.zeros_like(mean_q)
    z = vae_lib.reparameterize(key, mean_q, logvar_q)
    gaussians = {"mean_q": mean_q, "logvar_q": logvar_q, "mean_p": mean_p, "logvar_p": logvar_p}
    recon = model.decoder(z)
    if tc is not None:  # the published beta-TC objective (weights and N in `tc`)
        value, parts = vae_lib.beta_tc_elbo(y, recon, z, obs_logvar=obs_logvar, **gaussians, **tc)
        name = "objective"
    else:
        value, parts = vae_lib.elbo(y, recon, obs_logvar=obs_logvar, **gaussians, beta=beta)
        name = "elbo"
    aux = {name: jnp.mean(value)} | {k: jnp.mean(v) for k, v in parts.items()}
    return -jnp.mean(value), aux
