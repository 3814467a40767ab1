"""Tests for the food-factor figures (rendered to PNG and read back)."""

import os

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from jaxmr.data import food_factors as ff
from jaxmr.data.recipe1m import Recipe1MReader
from jaxmr.data.recipe1m_fixture import make_recipe1m_fixture
from jaxmr.viz import food


@pytest.fixture(scope="module")
def fixture_records(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe1m")
    info = make_recipe1m_fixture(root, n=30, seed=0)
    recs = list(Recipe1MReader(root, check_images="decode"))
    return info, recs


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_heatmap_png(tmp_path):
    rho = np.array([[0.9, -0.2, np.nan], [0.1, -0.8, 0.3]])
    path = food.factor_heatmap(
        rho, ["greenness", "wateriness"], tmp_path / "h.png", matched=[(0, 0)]
    )
    px = _png(path)
    assert px.shape[0] > 100 and px.shape[1] > 200
    # Strong positive (red) and strong negative (blue) cells are drawn.
    r, g, b = (px[..., i].astype(int) for i in range(3))
    assert np.any((r - b > 80) & (r > 150)) and np.any((b - r > 80) & (b > 150))
    with pytest.raises(ValueError, match=r"k=3 factor names"):
        food.factor_heatmap(rho, ["a", "b", "c"], tmp_path / "x.png")


def test_extreme_indices():
    low, high = food.extreme_indices([3.0, -1.0, 7.0, 0.0, 5.0], 2)
    assert low.tolist() == [1, 3] and high.tolist() == [2, 4]
    low, high = food.extreme_indices([1.0, 2.0, 3.0], 5)
    assert len(low) == len(high) == 1
    with pytest.raises(ValueError, match="finite 1-D"):
        food.extreme_indices([1.0, np.nan], 1)


def test_gallery_from_paths_and_arrays(fixture_records, tmp_path):
    info, recs = fixture_records
    g = np.array([info.greenness[r["id"]] for r in recs])
    titles = [r["title"] for r in recs]
    paths = [r["image_paths"][0] for r in recs]
    out = food.extremes_gallery(g, paths, titles, tmp_path / "g.png", n=5, name="greenness")
    px = _png(out).astype(int)
    h = px.shape[0]
    # The lower half (highest greenness) is greener than the upper half (lowest).
    top, bottom = px[: h // 2], px[h // 2 :]
    assert (bottom[..., 1] - bottom[..., 0]).mean() > (top[..., 1] - top[..., 0]).mean() + 5
    arrays = [np.asarray(Image.open(p)) for p in paths]
    out2 = food.extremes_gallery(g, arrays, titles, tmp_path / "g2.png", n=3)
    assert _png(out2).shape[1] < px.shape[1]
    # An unreadable file is drawn as a grey tile, not an error.
    broken = paths[:-1] + [str(tmp_path / "missing.jpg")]
    assert _png(food.extremes_gallery(g, broken, titles, tmp_path / "g3.png", n=2)).size > 0
    with pytest.raises(ValueError, match="one entry per item"):
        food.extremes_gallery(g, paths[:-1], titles, tmp_path / "bad.png")


def test_write_food_figures(fixture_records, tmp_path):
    info, recs = fixture_records
    f, names = ff.food_factor_matrix(recs)
    rng = np.random.default_rng(0)
    z = np.stack([f[:, 2] + 0.05 * rng.normal(size=len(recs)), rng.normal(size=len(recs))], 1)
    alignment = ff.food_factor_alignment(z, f, names)
    paths = food.write_food_figures(
        z, alignment, [r["image_paths"][0] for r in recs], [r["title"] for r in recs], tmp_path, n=4
    )
    assert [p.split("/")[-1] for p in paths] == [
        "food_factors_heatmap.png", "latent_0_extremes.png", "latent_1_extremes.png"
    ]  # fmt: skip
    for p in paths:
        assert _png(p).size > 0


def test_figures_say_which_side_they_show(fixture_records, tmp_path, monkeypatch):
    info, recs = fixture_records
    f, names = ff.food_factor_matrix(recs)
    z = np.stack([f[:, 2], np.arange(len(recs), dtype=float)], 1)
    texts = []
    save = Figure.savefig

    def recording_save(fig, path, **kwargs):
        sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
        ticks = [t.get_text() for ax in fig.axes[:1] for t in ax.get_xticklabels()]
        texts.append((os.path.basename(path), sup + fig.axes[0].get_title(), ticks))
        return save(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_save)
    label = "prior mean mu(x) (image side)"
    paths = food.write_food_figures(
        z,
        ff.food_factor_alignment(z, f, names),
        [r["image_paths"][0] for r in recs],
        [r["title"] for r in recs],
        tmp_path,
        n=2,
        prefix="prior_mean_",
        latent_symbol="mu",
        side_label=label,
    )
    assert [os.path.basename(p) for p in paths] == [
        "prior_mean_food_factors_heatmap.png",
        "prior_mean_latent_0_extremes.png",
        "prior_mean_latent_1_extremes.png",
    ]
    assert [t[0] for t in texts] == [os.path.basename(p) for p in paths]
    assert all(label in title for _, title, _ in texts)
    assert texts[0][2] == ["mu0", "mu1"]  # heatmap columns
    assert texts[1][1].startswith("mu0 (~greenness)")  # gallery of the greenness latent
