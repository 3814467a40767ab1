"""Tests for the food-factor proxies and their alignment with latents."""

import numpy as np
import pytest

from jaxmr.data import food_factors as ff
from jaxmr.data.recipe1m import Recipe1MReader
from jaxmr.data.recipe1m_fixture import PLANTED_FACTORS, make_recipe1m_fixture

SOUP = {
    "title": "Chicken Noodle Soup",
    "ingredients": [
        "water", "chicken broth", "chicken", "carrots", "celery", "onion", "egg noodles",
        "salt", "black pepper",
    ],
}  # fmt: skip
SALAD = {
    "title": "Green Garden Salad",
    "ingredients": [
        "romaine lettuce", "baby spinach", "cucumber", "avocado", "green peas", "olive oil",
        "lemon juice", "fresh basil", "salt",
    ],
}  # fmt: skip
CAKE = {
    "title": "Chocolate Layer Cake",
    "ingredients": [
        "all-purpose flour", "sugar", "cocoa powder", "butter", "eggs", "milk",
        "vanilla extract", "baking powder", "powdered sugar",
    ],
}  # fmt: skip
STEAK = {"title": "Grilled Steak", "ingredients": ["beef steak", "garlic", "rosemary", "salt"]}
LEMONADE = {"title": "Fresh Lemonade", "ingredients": ["water", "sugar", "lemons", "ice"]}


def test_soup_is_watery():
    assert ff.wateriness(SOUP) > 0.5
    assert ff.wateriness(SOUP) > ff.wateriness(SALAD) and ff.wateriness(SOUP) > ff.wateriness(CAKE)
    assert ff.wateriness(LEMONADE) > 0.5
    # Lemon juice is seasoning, milk in a cake only a small share: both stay low.
    assert ff.wateriness(SALAD) == 0.0
    assert 0.0 < ff.wateriness(CAKE) < 0.1


def test_salad_is_green():
    assert ff.greenness(SALAD) > 0.5
    assert ff.greenness(SALAD) > ff.greenness(SOUP) > ff.greenness(CAKE) == 0.0


def test_cake_is_not_savoury():
    assert ff.savoriness(CAKE) < -0.5
    assert ff.savoriness(STEAK) > 0.5 and ff.savoriness(SOUP) > 0.5
    assert ff.savoriness(CAKE) < ff.savoriness(SALAD)
    assert ff.savoriness({"title": "", "ingredients": ["flour", "salt"]}) == 0.0


@pytest.mark.parametrize(
    "fn, ingredient, expected",
    [
        (ff.wateriness, "water chestnuts", 0.0),
        (ff.wateriness, "watermelon", 0.0),
        (ff.wateriness, "vanilla ice cream", 0.0),
        (ff.wateriness, "chicken stock", 0.5),
        (ff.greenness, "sugar snap peas", 1.0),
        (ff.greenness, "red cabbage", 0.0),
        (ff.greenness, "ground coriander", 0.0),
        (ff.greenness, "peanuts", 0.0),
        (ff.greenness, "chick peas", 0.0),
        (ff.greenness, "Brussels Sprouts", 1.0),
        (ff.savoriness, "sugar snap peas", 0.0),
        (ff.savoriness, "tomatoes", 0.5),
        (ff.savoriness, "cherry tomatoes", 0.5),
        (ff.savoriness, "cream cheese", -0.5),
        (ff.savoriness, "brown sugar", -0.5),
    ],
)
def test_word_matching_and_exclusions(fn, ingredient, expected):
    assert fn({"title": "", "ingredients": [ingredient]}) == pytest.approx(expected)


def test_empty_recipe_scores_zero():
    for fn in ff.LEXICON_FACTORS.values():
        assert fn({"title": "", "ingredients": []}) == 0.0


def test_food_factor_matrix_with_and_without_nutrition():
    recs = [SOUP, SALAD, CAKE]
    mat, names = ff.food_factor_matrix(recs)
    assert names == ["savoriness", "wateriness", "greenness"]
    assert mat.shape == (3, 3)
    assert mat[0, 1] == ff.wateriness(SOUP) and mat[1, 2] == ff.greenness(SALAD)
    with_nutr = [dict(SOUP, nutrition={"fat": 2.0, "sugars": 1.0, "energy": 50.0}), CAKE]
    mat, names = ff.food_factor_matrix(with_nutr)
    assert names[3:] == list(ff.NUTRITION_FACTORS)
    assert mat[0, names.index("fat")] == 2.0
    assert np.isnan(mat[0, names.index("salt")]) and np.all(np.isnan(mat[1, 3:]))
    assert ff.food_factor_matrix(with_nutr, nutrition=False)[0].shape == (2, 3)
    assert ff.food_factor_matrix([], nutrition=False)[0].shape == (0, 3)


def test_alignment_recovers_permuted_monotone_latents():
    rng = np.random.default_rng(0)
    n = 200
    factors = rng.normal(size=(n, 3))
    nutr = rng.normal(size=(n, 6))
    nutr[::3] = np.nan  # a third of the recipes have no nutrition
    f = np.concatenate([factors, nutr], axis=1)
    names = list(ff.LEXICON_FACTORS) + list(ff.NUTRITION_FACTORS)
    # Latents: exp of greenness, minus savoriness (cubed), noise, wateriness; then the fat
    # nutrient where known.
    z = np.stack(
        [
            np.exp(factors[:, 2]),
            -(factors[:, 0] ** 3),
            rng.normal(size=n),
            factors[:, 1],
            np.where(np.isnan(nutr[:, 1]), 0.0, nutr[:, 1]),
        ],
        axis=1,
    )
    out = ff.food_factor_alignment(z, f, names)
    rho = out["spearman"]
    assert rho.shape == (9, 5)
    assert rho[2, 0] == pytest.approx(1.0) and rho[0, 1] == pytest.approx(-1.0)
    assert abs(rho[0, 2]) < 0.2
    assert out["best_latent"][:3].tolist() == [1, 3, 0]
    lex = out["lexicon"]
    assert dict(zip(lex["factors"], lex["latents"], strict=True)) == {0: 1, 1: 3, 2: 0}
    assert lex["mcc"] == pytest.approx(1.0) and lex["n"] == n
    assert lex["matched_spearman"][0] == pytest.approx(-1.0)
    nut = out["nutrition"]
    assert nut["n"] == n - len(range(0, n, 3))
    fat_i = names.index("fat")
    assert dict(zip(nut["factors"], nut["latents"], strict=True))[fat_i] == 4
    assert rho[fat_i, 4] == pytest.approx(1.0)


def test_alignment_input_errors():
    with pytest.raises(ValueError, match=r"latents \(10, 2\), factors \(9, 3\)"):
        ff.food_factor_alignment(np.zeros((10, 2)), np.zeros((9, 3)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        ff.food_factor_alignment(np.full((10, 2), np.nan), np.zeros((10, 1)), ["greenness"])


def test_proxies_track_the_fixtures_planted_factors(tmp_path):
    info = make_recipe1m_fixture(tmp_path, n=40, seed=0)
    recs = list(Recipe1MReader(tmp_path))
    f, names = ff.food_factor_matrix(recs)
    truth = np.array([[info.factors[k][r["id"]] for k in PLANTED_FACTORS] for r in recs])
    out = ff.food_factor_alignment(truth, f, names)
    for j, name in enumerate(PLANTED_FACTORS):
        assert out["spearman"][names.index(name), j] > 0.6, name
    # Soups and smoothies in the fixture are watery; cakes and cookies are sweet.
    by_dish = {}
    for r, row in zip(recs, f, strict=True):
        by_dish.setdefault(info.dish[r["id"]], []).append(row)
    mean = {d: np.mean(v, axis=0) for d, v in by_dish.items()}
    w, s = names.index("wateriness"), names.index("savoriness")
    assert min(mean["soup"][w], mean["smoothie"][w]) > max(mean["salad"][w], mean["cake"][w])
    assert max(mean["cake"][s], mean["cookies"][s]) < min(mean["stew"][s], mean["stir fry"][s])
