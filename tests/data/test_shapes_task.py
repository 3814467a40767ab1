"""The shapes benchmark's PCA features and their map back to pixels."""

import numpy as np
import pytest

from jaxmr.data.shapes import make_paired_shapes
from jaxmr.data.shapes_task import pca_features, pca_images, shapes_arrays


def test_pca_images_inverts_the_features_on_their_span():
    # 12 images of 2 x 2 x 3 pixels in a 3-dimensional affine subspace: 3 components keep all
    rng = np.random.default_rng(0)
    mean = rng.uniform(0.3, 0.7, 12)
    basis = np.linalg.qr(rng.standard_normal((12, 3)))[0].T  # [3, 12] orthonormal rows
    flat = mean + 0.1 * rng.standard_normal((12, 3)) @ basis
    images = flat.reshape(12, 2, 2, 3).astype(np.float32)
    feats, fitted = pca_features(images, dim=3)
    back = pca_images(feats, fitted, size=2)
    assert back.shape == (12, 2, 2, 3)
    np.testing.assert_allclose(back, images, atol=1e-5)
    # with one component fewer the images are not recovered: the test can fail
    feats2, fitted2 = pca_features(images, dim=2)
    assert np.abs(pca_images(feats2, fitted2, size=2) - images).max() > 1e-3
    # leading axes are kept, values clipped to [0, 1]
    assert pca_images(100 * feats[:4].reshape(2, 2, 3), fitted, size=2).shape == (2, 2, 2, 2, 3)
    assert pca_images(100 * feats, fitted, size=2).max() <= 1.0
    with pytest.raises(ValueError, match="features have 2 components, the PCA basis has 3"):
        pca_images(feats[:, :2], fitted, size=2)
    with pytest.raises(ValueError, match="not 3 x 3 x 3"):
        pca_images(feats, fitted, size=3)


def test_shapes_arrays_carry_the_target_basis():
    arrays = shapes_arrays(200, seed=0, query_dim=4, target_dim=6, size=16)
    basis = {k: arrays[f"y_pca_{k}"] for k in ("mean", "components", "scale")}
    assert basis["components"].shape == (6, 16 * 16 * 3) and basis["scale"].shape == (6,)
    pics = pca_images(arrays["y"][:5], basis, size=16)
    assert pics.shape == (5, 16, 16, 3) and 0.0 <= pics.min() and pics.max() <= 1.0
    # each rendered-back image is closer to its own original than to the others'
    originals = make_paired_shapes(200, seed=0, size=16)["y"][:5].astype(np.float32) / 255.0
    dist = np.abs(pics[:, None] - originals[None]).mean(axis=(2, 3, 4))  # [5, 5]
    np.testing.assert_array_equal(dist.argmin(1), np.arange(5))
