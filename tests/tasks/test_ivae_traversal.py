"""Latent traversals written by eval.py: image grids on shapes, true factors on the synthetic
data, the flow inverse's round trip on trained parameters, and the skips."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from configs import ivae_synthetic
from jaxmr.evaluate import evaluate
from jaxmr.tasks import build_task
from jaxmr.tasks.ivae.traversal import TraversalEvaluator
from jaxmr.train import loop

SIZE = 16  # image side of the tiny shapes run


def _png_shape(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")).shape


def _traversal(task):
    found = [ev for ev in task.evaluators if isinstance(ev, TraversalEvaluator)]
    return found[0] if found else None


def _shapes_config():
    config = ivae_synthetic.get_config("smoke,benchmark=shapes")
    config.data.shapes.num_examples = 400
    config.data.shapes.size = SIZE
    config.data.shapes.query_dim = 8
    config.data.shapes.target_dim = 8
    config.model.flow.num_blocks = 2
    config.model.flow.hidden = (16,)
    config.total_steps = 12
    config.num_devices = 1  # the other tests train on the 8 simulated devices
    config.schedule.checkpoint_every_steps = 12
    config.evals.mcc.every_steps = 0
    config.evals.traversal.max_examples = 300
    return config


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    config = _shapes_config()
    workdir = str(tmp_path_factory.mktemp("shapes"))
    out = loop.train_and_evaluate(build_task(config), config, workdir)
    metrics = evaluate(config, workdir)  # what eval.py runs
    return config, workdir, out, metrics


def test_shapes_eval_writes_the_traversal_grid(shapes_run):
    config, workdir, out, metrics = shapes_run
    # during training: the round trip, logged at the end
    assert out["traversal/round_trip_max"] < 1e-4
    p, d, t = config.evals.traversal.num_points, 4, config.evals.traversal.num_steps
    # one row per (example, latent), a data column then t values; 1-pixel gaps, 4 between
    # examples
    rows, cols = p * d, t + 1
    height = rows * SIZE + (rows - 1) + (p - 1) * 3
    width = cols * SIZE + (cols - 1)
    eval_dir = os.path.join(workdir, "eval")
    assert _png_shape(os.path.join(eval_dir, "traversal_grid.png")) == (height, width, 3)
    assert metrics["traversal/grid_shape"] == [height, width, 3]
    assert _png_shape(os.path.join(eval_dir, "traversal.png"))[2] == 3
    assert f"eval/step_{metrics['step']}/traversal.png" in metrics["figures"]
    with open(os.path.join(eval_dir, "metrics.json")) as f:
        assert json.load(f)["traversal/examples"] == metrics["traversal/examples"]
    # moving a latent changes the picture: the traversal columns are not all equal
    grid = np.asarray(Image.open(os.path.join(eval_dir, "traversal_grid.png")).convert("RGB"))
    first = grid[:SIZE, SIZE + 1 : 2 * SIZE + 1].astype(int)
    last = grid[:SIZE, width - SIZE :].astype(int)
    assert np.abs(first - last).max() > 0


def test_shapes_inverse_round_trip_and_cost_on_trained_parameters(shapes_run):
    _, _, _, m = shapes_run
    # the default D > d form here is the full 8-dimensional flow with a dense first layer
    assert m["traversal/round_trip_max"] < 1e-4
    iters = m["traversal/cost_iterations"]
    assert iters == [1, 3, 10, 30, 100, 300]
    for name in ("data", "traversal", "2x_data", "4x_data", "8x_data", "16x_data"):
        res = m[f"traversal/residual_{name}"]
        assert len(res) == len(iters) and res[0] > res[-1]
        assert 0.0 <= m[f"traversal/frac_not_converged_{name}"] <= 1.0
        assert m[f"traversal/max_branch_sigma_{name}"] > 0.0
    # one iteration per block is not an inverse, 100 are (on the data and the traversal)
    res = dict(zip(iters, m["traversal/residual_data"], strict=True))
    assert res[1] > 1e-3 > 1e-4 > res[100]
    assert m["traversal/residual_traversal"][iters.index(100)] < 1e-4
    assert m["traversal/iters_to_tol_data"] in iters
    assert m["traversal/inverse_seconds"] > 0 and m["traversal/inverse_points"] > 0


def _untrained(config, tmp_path):
    task = build_task(config)
    ev = _traversal(task)
    params = task.init_fn(jax.random.key(0))
    return ev, params


def test_synthetic_traversal_against_the_true_factors(tmp_path):
    # (the round trip on trained synthetic parameters: tests/tasks/test_ivae_study.py)
    config = ivae_synthetic.get_config("smoke")
    ev, params = _untrained(config, tmp_path)
    m, figures = ev.evaluate(params, str(tmp_path))
    d = config.model.latent_dim
    response = np.asarray(m["traversal/factor_response"])
    assert response.shape == (d, d) and np.all(response >= 0)
    assert 1.0 / d <= m["traversal/factor_purity"] <= 1.0
    assert m["traversal/unmix_check_max_error"] < 1e-2  # the data map is exact on the data
    assert m["traversal/round_trip_max"] < 1e-4
    names = sorted(os.path.basename(f) for f in figures)
    assert names == ["inverse_convergence.png", "traversal_factors.png", "traversal_lines.png"]
    for f in figures:
        assert _png_shape(f)[2] == 3


def test_explicit_variant_decodes_with_its_decoder(tmp_path):
    config = ivae_synthetic.get_config("smoke,variant=ivae")
    ev, params = _untrained(config, tmp_path)
    metrics, figures = ev.evaluate(params, str(tmp_path))
    assert "traversal/reconstruction_rmse" in metrics
    assert not any(k.startswith("traversal/residual") for k in metrics)  # no inverse to cost
    assert sorted(os.path.basename(f) for f in figures) == [
        "traversal_factors.png",
        "traversal_lines.png",
    ]


def test_isometry_has_no_traversal_and_says_why(capsys):
    task = build_task(ivae_synthetic.get_config("smoke,variant=isometry"))
    assert _traversal(task) is None
    assert "traversal figures skipped: model.variant='isometry'" in capsys.readouterr().err


def test_user_npz_and_projection_are_reported(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path, u=rng.normal(size=(128, 4)), x=rng.normal(size=(128, 6)), s=rng.normal(size=(128, 5))
    )
    config = ivae_synthetic.get_config("smoke")
    config.data.path = str(path)
    ev, params = _untrained(config, tmp_path)
    metrics, figures = ev.evaluate(params, str(tmp_path))
    assert "no map from the targets back to pixels" in metrics["traversal/skipped"]
    assert [os.path.basename(f) for f in figures] == ["inverse_convergence.png"]
    # the fixed top-d projection decodes through its transpose, and says so
    config = ivae_synthetic.get_config("smoke")
    config.data.target_dim = 8
    config.model.target_projection = "pca"
    ev, params = _untrained(config, tmp_path)
    metrics, _ = ev.evaluate(params, str(tmp_path))
    assert "fixed top-d projection" in metrics["traversal/note"]
    assert np.asarray(metrics["traversal/factor_response"]).shape == (5, 5)


def test_traversal_can_be_turned_off():
    config = ivae_synthetic.get_config("smoke")
    config.evals.traversal.every_steps = -1
    assert _traversal(build_task(config)) is None


def test_cost_points_below_one_is_a_clear_error():
    config = ivae_synthetic.get_config("smoke")
    config.evals.traversal.cost_points = 0
    with pytest.raises(ValueError, match="config.evals.traversal.cost_points must be >= 1"):
        build_task(config)
