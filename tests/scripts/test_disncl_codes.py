"""scripts/disncl_codes.py: the variance share against a closed form."""

import numpy as np

from tests.scripts.loader import load_script


def test_variance_share_is_the_explained_share_of_total_variance():
    """Codes = [3 * factor, unit noise]: the factor explains var 9 * 1/12 of a total
    9/12 + 1, i.e. a share of 0.75/1.75; shrinking the factor column 10x lowers the share to
    0.0075/1.0075 while a probe's R² of the factor stays ~1."""
    mod = load_script("disncl_codes")
    rng = np.random.default_rng(0)
    n = 4000
    f = rng.uniform(size=n)
    noise = rng.normal(size=n)
    for scale in (3.0, 0.3):
        codes = np.stack([scale * f, noise], axis=1)
        expected = scale**2 / 12 / (scale**2 / 12 + 1.0)
        got = mod.variance_share(codes, f[:, None], False, seed=0)
        np.testing.assert_allclose(got, expected, rtol=0.05)
    cats = rng.integers(0, 3, size=n)
    codes = np.stack([cats == 1, rng.normal(size=n)], axis=1).astype(float)
    expected = (2 / 9) / (2 / 9 + 1.0)  # var of a 1/3 indicator = 2/9
    np.testing.assert_allclose(
        mod.variance_share(codes, cats[:, None], True, 0), expected, rtol=0.05
    )
