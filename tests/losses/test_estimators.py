"""Estimator objectives: CLUB estimator, discriminator, critics, and an alternating loop.

`EstimatorState`/`estimator_update` below are a test-local fitting loop (the library alternates
through trainer phases; see tests/train/test_contract.py)."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx, struct

from jaxmr.losses import estimators as objectives
from jaxmr.losses import mi_bounds as mb
from jaxmr.models.critics import Discriminator, GaussianConditional, SeparableCritic


# ---- test-local estimator fitting (what an estimator phase does inside the trainer) ----
@struct.dataclass
class EstimatorState:
    """(test helper) Parameters, optimiser state and objective of an auxiliary estimator (a pytree).

    Attributes:
      graphdef: the module's static structure (``nnx.split``).
      params: the module's ``nnx.State``.
      opt_state: the estimator's own optax state.
      step: number of estimator updates done.
      tx: the estimator's optax transformation (static).
      objective: the loss the estimator minimises (static); see ``club_objective``,
        ``discriminator_objective``, ``critic_objective``.
    """

    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    params: nnx.State
    opt_state: optax.OptState
    step: jax.Array
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    objective: objectives.Objective = struct.field(pytree_node=False)

    @classmethod
    def create(
        cls, module: nnx.Module, tx: optax.GradientTransformation, objective: objectives.Objective
    ) -> "EstimatorState":
        """Splits ``module`` and initialises ``tx`` on its parameters."""
        graphdef, params = nnx.split(module)
        return cls(
            graphdef=graphdef,
            params=params,
            opt_state=tx.init(params),
            step=jnp.zeros((), jnp.int32),
            tx=tx,
            objective=objective,
        )

    @property
    def module(self) -> nnx.Module:
        """A fresh module holding the current parameters."""
        return nnx.merge(self.graphdef, self.params)


def apply_estimator(state: "EstimatorState", *args: Any, **kwargs: Any) -> Any:
    """Calls the estimator module with its current parameters (e.g. ``(mu, logvar)`` of q)."""
    return state.module(*args, **kwargs)


def estimator_update(
    state: "EstimatorState",
    inputs_a: jax.Array,
    inputs_b: jax.Array,
    *,
    key: jax.Array | None = None,
    where: jax.Array | None = None,
) -> tuple[EstimatorState, dict[str, jax.Array]]:
    """One optimiser step of the estimator on stop-gradient inputs.

    Args:
      state: the estimator state.
      inputs_a: ``[N, Da]`` first codes (e.g. the conditioning code of q(b|a)).
      inputs_b: ``[N, Db]`` second codes.
      key: PRNG key, needed by objectives that shuffle pairs (``discriminator_objective``).
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``(new_state, metrics)`` with ``estimator_loss``, ``estimator_grad_norm`` and the
      objective's own metrics (all evaluated before the update).
    """
    # The estimator must follow the codes, never pull them: no gradient reaches the encoders
    # even when this is traced inside a differentiated function.
    a = jax.lax.stop_gradient(inputs_a)
    b = jax.lax.stop_gradient(inputs_b)

    def loss_fn(params):
        module = nnx.merge(state.graphdef, params)
        return state.objective(module, a, b, key=key, where=where)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "estimator_loss": loss,
        "estimator_grad_norm": optax.tree.norm(grads),
        **metrics,
    }
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics


class _Alt:
    """Namespace standing in for the old module: helpers above, objectives from the library."""

    EstimatorState = EstimatorState
    estimator_update = staticmethod(estimator_update)
    apply_estimator = staticmethod(apply_estimator)
    club_objective = staticmethod(objectives.club_objective)
    discriminator_objective = staticmethod(objectives.discriminator_objective)
    critic_objective = staticmethod(objectives.critic_objective)


alt = _Alt
K = 2


def gaussian_pairs(seed, shape, rho):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=shape)
    b = rho * a + np.sqrt(1.0 - rho**2) * rng.normal(size=shape)
    return a.astype(np.float32), b.astype(np.float32)


def true_mi(rho):
    return -0.5 * K * np.log(1.0 - rho**2)


def _fit(state, a, b, keys=None):
    """Runs estimator_update over the leading (step) axis of a, b inside one jitted scan."""

    @jax.jit
    def run(state, a, b, keys):
        def step(state, batch):
            a, b, key = batch
            return alt.estimator_update(state, a, b, key=key)

        return jax.lax.scan(step, state, (a, b, keys))

    keys = jax.random.split(jax.random.key(0), a.shape[0]) if keys is None else keys
    return run(state, a, b, keys)


def test_club_estimator_learns_the_conditional():
    rho = 0.8
    state = alt.EstimatorState.create(
        GaussianConditional(K, K, hidden=(16,), rngs=nnx.Rngs(0)),
        optax.adam(1e-2),
        alt.club_objective,
    )
    a, b = gaussian_pairs(0, (300, 128, K), rho)
    state, metrics = _fit(state, a, b)
    assert int(state.step) == 300
    # The true conditional's NLL per example: k/2 (log(2 pi (1 - rho^2)) + 1).
    true_nll = 0.5 * K * (np.log(2 * np.pi * (1 - rho**2)) + 1)
    nll = np.asarray(metrics["club_nll"])
    assert nll[0] > true_nll + 0.5  # it started far away ...
    assert abs(nll[-20:].mean() - true_nll) < 0.1  # ... and converged
    ea, eb = gaussian_pairs(1, (2048, K), rho)
    mu, logvar = alt.apply_estimator(state, ea)
    assert jnp.mean(mb.club_upper_bound(mu, logvar, eb)) > true_mi(rho)
    assert np.all(np.isfinite(np.asarray(metrics["estimator_grad_norm"])))


def test_update_trains_on_stop_gradient_inputs_and_respects_masks():
    state = alt.EstimatorState.create(
        GaussianConditional(K, K, hidden=(8,), rngs=nnx.Rngs(0)), optax.sgd(0.1), alt.club_objective
    )
    a, b = (jnp.asarray(x) for x in gaussian_pairs(2, (6, K), 0.5))
    # No gradient reaches the codes, even when the update is traced inside jax.grad.
    loss = lambda a: alt.estimator_update(state, a, b)[1]["estimator_loss"]
    grad_a = jax.jit(jax.grad(loss))(a)
    assert np.all(np.asarray(grad_a) == 0)
    # Masked rows (garbage) change nothing.
    where = jnp.array([True, True, False, True, True, False])
    keep = np.array([0, 1, 3, 4])
    new_masked, m_masked = jax.jit(alt.estimator_update)(
        state, a.at[2].set(1e6), b.at[5].set(jnp.inf), where=where
    )
    new_small, m_small = jax.jit(alt.estimator_update)(state, a[keep], b[keep])
    np.testing.assert_allclose(m_masked["estimator_loss"], m_small["estimator_loss"], rtol=1e-5)
    for x, y in zip(
        jax.tree.leaves(new_masked.params), jax.tree.leaves(new_small.params), strict=True
    ):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_discriminator_learns_the_density_ratio():
    rho = 0.95
    state = alt.EstimatorState.create(
        Discriminator(2 * K, hidden=(32, 32), rngs=nnx.Rngs(0)),
        optax.adam(5e-3),
        alt.discriminator_objective,
    )
    with pytest.raises(ValueError, match="key"):
        alt.estimator_update(state, jnp.ones((4, K)), jnp.ones((4, K)))
    a, b = gaussian_pairs(3, (300, 128, K), rho)
    state, metrics = _fit(state, a, b)
    acc = np.asarray(metrics["discriminator_accuracy"])
    assert acc[:5].mean() < 0.65 and acc[-20:].mean() > 0.8
    # At the optimum the logit is log p(a,b)/p(a)p(b), whose mean over joint pairs is I(a; b).
    ratio_mi = np.asarray(metrics["ratio_mi"])[-50:].mean()
    assert 0.5 * true_mi(rho) < ratio_mi < 1.5 * true_mi(rho), (ratio_mi, true_mi(rho))


def test_critic_objective_maximises_a_lower_bound():
    rho = 0.8
    with pytest.raises(ValueError, match="bound"):
        alt.critic_objective("tuba")
    state = alt.EstimatorState.create(
        SeparableCritic(K, K, hidden=(32,), embed_dim=16, rngs=nnx.Rngs(0)),
        optax.adam(5e-3),
        alt.critic_objective("infonce"),
    )
    a, b = gaussian_pairs(4, (300, 128, K), rho)
    _, metrics = _fit(state, a, b)
    est = np.asarray(metrics["mi_estimate"])
    np.testing.assert_allclose(est, -np.asarray(metrics["estimator_loss"]), rtol=1e-6)
    assert est[:5].mean() < 0.3 * true_mi(rho)
    assert 0.8 * true_mi(rho) < est[-50:].mean() < true_mi(rho)


def test_alternating_club_regulariser_removes_shared_information():
    """Encoder: s = a, x = w a + e with a learnable w. Minimising vCLUB(s; x) under an estimator
    refitted every step (inside the same jitted step) drives w, hence I(s; x), to zero."""
    est = alt.EstimatorState.create(
        GaussianConditional(K, K, hidden=(16,), rngs=nnx.Rngs(0)),
        optax.adam(1e-2),
        alt.club_objective,
    )
    tx = optax.adam(2e-2)
    w0 = jnp.array(2.0)

    def encode(w, a, e):
        return a, w * a + e

    @jax.jit
    def train(w, est, a, e):
        def step(carry, batch):
            w, opt_state, est = carry
            s, x = encode(w, *batch)
            est, est_metrics = alt.estimator_update(est, s, x)

            def loss_fn(w):
                s, x = encode(w, *batch)
                mu, logvar = alt.apply_estimator(est, s)
                return jnp.mean(mb.club_upper_bound(mu, logvar, x))

            club, grad = jax.value_and_grad(loss_fn)(w)
            updates, opt_state = tx.update(grad, opt_state, w)
            return (optax.apply_updates(w, updates), opt_state, est), (club, w)

        return jax.lax.scan(step, (w, tx.init(w), est), (a, e))

    rng = np.random.default_rng(5)
    a, e = rng.normal(size=(2, 250, 128, K)).astype(np.float32)
    (w, _, est), (club, ws) = train(w0, est, a, e)
    assert int(est.step) == 250
    # Once the estimator has caught up, its upper bound exceeds the information shared at
    # w = 2 (correlation^2 = 4/5 per dimension, so I(s; x) = K/2 log 5 = log 5) ...
    assert np.asarray(club)[:50].max() > np.log(5.0)
    # ... and the encoder removes it.
    assert abs(float(w)) < 0.2, np.asarray(ws)[::50]
    assert np.asarray(club)[-20:].mean() < 0.1
