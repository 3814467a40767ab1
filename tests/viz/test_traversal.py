"""Traversal figures: the raw grid's layout (pixel for pixel) and the labelled figures."""

import numpy as np
import pytest
from PIL import Image

from jaxmr.viz import traversal as viz


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_image_grid_layout_and_png_size(tmp_path):
    # 4 rows (2 blocks of 2) x 3 columns of 5 x 6 tiles; tile (i, j) has value (3i + j) / 12
    tiles = np.zeros((4, 3, 5, 6, 3), np.float32)
    for i in range(4):
        for j in range(3):
            tiles[i, j] = (3 * i + j) / 12
    grid = viz.image_grid(tiles, gap=1, block_rows=2, block_gap=4, fill=1.0)
    # height: 4 tiles of 5, 1 gap inside each block, 4 between the blocks: 20 + 2 + 4 = 26
    assert grid.shape == (26, 3 * 6 + 2, 3)
    assert grid[0, 0, 0] == 0.0 and grid[5, 0, 0] == 1.0  # first tile, then the gap
    np.testing.assert_allclose(grid[6, 7], 4 / 12)  # row 1 starts at 6, column 1 at 7
    np.testing.assert_allclose(grid[11:15, 0], 1.0)  # the block gap
    np.testing.assert_allclose(grid[15, 14], 8 / 12)  # row 2 starts at 5+1+5+4 = 15
    path = viz.save_image_grid(grid, tmp_path / "g.png")
    assert _png(path).shape == (26, 20, 3)
    with pytest.raises(ValueError, match="blocks of 3"):
        viz.image_grid(tiles, block_rows=3)
    with pytest.raises(ValueError, match=r"\[rows, cols, H, W, 3\]"):
        viz.image_grid(tiles[..., 0])


def test_labelled_figures_are_pngs(tmp_path):
    tiles = np.random.default_rng(0).uniform(size=(2, 4, 8, 8, 3))
    grid = viz.image_grid(tiles, gap=1)
    path = viz.plot_image_traversal(
        grid,
        tmp_path / "t.png",
        tile=8,
        gap=1,
        row_labels=["z0", "z1"],
        row_tops=[0, 9],
        col_labels=["data", "-1", "0", "+1"],
        title="t",
    )
    assert _png(path).ndim == 3
    resp = np.array([[3.9, 0.2], [0.3, 4.1]])
    assert _png(viz.plot_factor_response(resp, tmp_path / "r.png", factor_names=["a", "b"])).ndim
    with pytest.raises(ValueError, match="1 factor names for 2"):
        viz.plot_factor_response(resp, tmp_path / "r.png", factor_names=["a"])
    vals = np.linspace(-1, 1, 5)[None].repeat(2, 0)
    lines = viz.plot_factor_traversal(
        vals, np.zeros((2, 5, 2)), tmp_path / "l.png", factor_names=["a", "b"]
    )
    conv = viz.plot_inverse_convergence(
        [1, 10, 100], {"data": [1.0, 1e-3, 1e-6]}, tmp_path / "c.png", tolerance=1e-4
    )
    assert _png(lines).ndim == 3 and _png(conv).ndim == 3
