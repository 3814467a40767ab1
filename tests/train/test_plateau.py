"""`schedule.decay="plateau"`: PyTorch's ReduceLROnPlateau on the epoch-mean training loss
(the published iVAE code's optimiser), fed the loss by the train step."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs.common import base_schedule
from jaxmr.train.optim import build_optimizer
from jaxmr.train.step import TrainState, make_train_step
from jaxmr.train.task import Phase, Task

# Epoch-mean losses: improvements, ties, a rise, improvements smaller than the relative
# threshold (1e-4) and negative values (the beta-TC loss is negative once it fits; PyTorch's
# relative threshold then counts a tie, -2.0 after -2.0, as an improvement, and so must we).
EPOCH_LOSSES = [5.0, 4.0, 4.5, 3.0, 3.0, 2.9999, 2.9999, 2.9999, -1.0, -0.99995, -1.00005]
EPOCH_LOSSES += [-2.0] * 3


def _optim(lr=0.01):
    return ml_collections.ConfigDict(
        dict(name="adam", learning_rate=lr, b1=0.9, b2=0.999, weight_decay=0.0, grad_clip_norm=0.0)
    )


def _plateau(patience, steps=0, factor=0.1):
    sched = base_schedule()
    sched.decay, sched.decay_factor = "plateau", factor
    sched.plateau_patience, sched.plateau_steps = patience, steps
    return sched


def _torch_rule(losses, patience, factor=0.1, lr=0.01, eps=1e-8):
    """The learning rate after each epoch, by the rule torch.optim.lr_scheduler
    .ReduceLROnPlateau documents (mode min, threshold 1e-4 relative, cooldown 0)."""
    best, bad, out = float("inf"), 0, []
    for v in losses:
        if v < best * (1 - 1e-4):
            best, bad = v, 0
        else:
            bad += 1
        if bad > patience:
            if lr - lr * factor > eps:
                lr *= factor
            bad = 0
        out.append(lr)
    return out


def _jax_lrs(losses, patience, steps_per_epoch=3):
    """Effective learning rate (Adam's 0.01 x the plateau scale) after each epoch."""
    opt = build_optimizer(_optim(), _plateau(patience), 100, steps_per_epoch=steps_per_epoch)
    params = {"w": jnp.zeros(2)}
    state = opt.init(params)
    out = []
    for v in losses:
        for _ in range(steps_per_epoch):
            _, state = opt.update({"w": jnp.ones(2)}, state, params, value=jnp.float32(v))
        out.append(0.01 * float(state[-1].scale))
    return out


@pytest.mark.parametrize("patience", [0, 1, 2])
def test_plateau_follows_torch_reduce_lr_on_plateau(patience):
    expected = _torch_rule(EPOCH_LOSSES, patience)
    np.testing.assert_allclose(_jax_lrs(EPOCH_LOSSES, patience), expected, rtol=1e-5)
    assert expected[-1] < 0.01  # the sequence does decay (the test could fail)


def test_plateau_matches_torch_itself():
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([w], lr=0.01)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=0)
    expected = []
    for v in EPOCH_LOSSES:
        sched.step(v)
        expected.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(_jax_lrs(EPOCH_LOSSES, 0), expected, rtol=1e-5)


def test_plateau_averages_the_loss_over_an_epoch():
    # Within each epoch the loss falls (noise), but epoch 2's mean (4.0) is no better than
    # epoch 1's: one decay, at the end of epoch 2, not at a step.
    per_step = [[6.0, 4.0, 2.0], [2.0, 4.0, 6.0], [1.0, 1.0, 1.0]]
    opt = build_optimizer(_optim(), _plateau(0), 100, steps_per_epoch=3)
    params = {"w": jnp.zeros(2)}
    state = opt.init(params)
    scales = []
    for epoch in per_step:
        for v in epoch:
            _, state = opt.update({"w": jnp.ones(2)}, state, params, value=jnp.float32(v))
            scales.append(float(state[-1].scale))
    np.testing.assert_allclose(scales, [1, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1], rtol=1e-6)


def test_train_step_feeds_the_loss_and_logs_the_decayed_rate():
    # A constant loss never improves after the first epoch: the logged rate falls by 10x at
    # the end of every later epoch (2 steps each).
    def loss_fn(params, batch, ctx):
        return 0.0 * jnp.sum(params["p"]["v"]) + 1.0, {}

    task = Task(
        name="t",
        init_fn=lambda key: {"p": {"v": jnp.zeros(())}},
        optimizers={"p": build_optimizer(_optim(), _plateau(0), 10, steps_per_epoch=2)},
        phases=(Phase("main", ("p",), loss_fn),),
        predict_fn=lambda params, batch: {},
        train_arrays={"x": np.zeros(4, np.float32)},
    )
    params = task.init_fn(jax.random.key(0))
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state={"p": task.optimizers["p"].init(params["p"])},
        carry={},
    )
    step = jax.jit(make_train_step(task, steps_per_epoch=2))
    lrs = []
    for _ in range(6):
        state, m = step(state, {"x": jnp.zeros(2)}, jax.random.key(0))
        lrs.append(float(m["lr/p"]))
    np.testing.assert_allclose(lrs, [0.01, 0.01, 0.01, 0.001, 0.001, 1e-4], rtol=1e-5)


def test_plateau_config_errors():
    with pytest.raises(ValueError, match="plateau_steps"):
        build_optimizer(_optim(), _plateau(0), 10)  # one epoch, but no epoch length known
    with pytest.raises(ValueError, match="plateau_patience"):
        build_optimizer(_optim(), _plateau(-1, steps=5), 10)
    with pytest.raises(ValueError, match="decay_factor"):
        build_optimizer(_optim(), _plateau(0, steps=5, factor=1.5), 10)
    # other decays never read a loss: their update takes none
    opt = build_optimizer(_optim(), base_schedule(), 10)
    params = {"w": jnp.zeros(2)}
    opt.update(params, opt.init(params), params)
    assert isinstance(opt, optax.GradientTransformation)


def test_published_recipe_config_and_study_model():
    from configs import ivae_synthetic

    config = ivae_synthetic.get_config("variant=ivae,recipe=published")
    assert config.optim.learning_rate == 0.01 and config.batch_size == 64
    assert config.schedule.decay == "plateau" and config.schedule.plateau_patience == 0
    assert config.total_steps == 12500  # 20 epochs of 40,000 // 64 = 625 steps
    assert config.model.prior.mean == "zero" and config.loss.elbo == "beta_tc"
    with pytest.raises(ValueError, match="recipe"):
        ivae_synthetic.get_config("variant=ivae,recipe=torch")
