"""Ingredient-lexicon proxies for food factors, and their alignment with learned latents.

The iIVAE paper reports Recipe1M latents aligned with *savoriness*, *wateriness* and
*greenness*; Recipe1M has no labels for these, so jaxmr scores each recipe with documented
proxies [reconstruction] and measures alignment quantitatively (Spearman per latent, MCC
after Hungarian matching). Each proxy reads a record of
:class:`~jaxmr.data.recipe1m.Recipe1MReader` (``title``, cleaned ``ingredients``; optional
``nutrition``):

- :func:`savoriness` in (-1, 1): ``(n_savoury - n_sweet) / (n_savoury + n_sweet + 1)``
  over ingredients matching the savoury lexicon (meat, fish, alliums, umami sauces, savoury
  cheeses, savoury spices) and the sweet lexicon (sugars, syrups, chocolate, vanilla,
  dessert fruits), plus one count each for a dessert word or a savoury-dish word in the
  title. The ``+ 1`` shrinks recipes with little evidence towards 0. Salt, flour, butter,
  eggs and milk are neutral: they appear in both cakes and stews.
- :func:`wateriness` in [0, 1]: ``0.5 * share of liquid ingredients`` (water, broth, stock,
  milk, juice, wine, spirits, ...; not lemon/lime juice, used as seasoning) ``+ 0.5 *
  [title names a soup, stew or drink]``.
- :func:`greenness` in [0, 1]: share of ingredients that are green vegetables or fresh
  green herbs.

Matching is on whole words with an optional plural ``s``/``es`` ("tomatoes" matches
"tomato", "watermelon" does not match "water"); a per-lexicon exclusion list removes known
false friends (water chestnuts, sugar snap peas, red cabbage, coriander seed, ...).

With ``recipes_with_nutritional_info.json`` present, the per-100 g nutrients (energy, fat,
protein, salt, saturates, sugars) are further, measured factors (NaN where absent).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from jaxmr.data.recipe1m import NUTRIENTS
from jaxmr.metrics.mcc import correlation_matrix, mcc_report

# --------------------------------------------------------------------------- lexicons

SAVOURY = (
    "beef", "steak", "pork", "bacon", "ham", "sausage", "chorizo", "salami", "pepperoni",
    "prosciutto", "chicken", "turkey", "lamb", "veal", "duck", "venison", "meat", "fish",
    "salmon", "tuna", "cod", "tilapia", "halibut", "shrimp", "prawn", "crab", "lobster",
    "clam", "mussel", "scallop", "anchovy", "anchovies", "sardine", "onion", "garlic",
    "shallot", "leek", "scallion", "green onion", "mushroom", "tomato", "tomato paste",
    "cheese", "parmesan", "cheddar", "mozzarella", "feta", "soy sauce", "fish sauce",
    "worcestershire sauce", "miso", "broth", "stock", "bouillon", "black pepper", "cumin",
    "pepper", "paprika", "chili powder", "curry", "oregano", "thyme", "rosemary", "bay leaf",
    "bay leaves", "mustard", "olive", "caper",
)  # fmt: skip
SAVOURY_EXCLUDE = ("cream cheese", "mascarpone", "olive oil")

SWEET = (
    "sugar", "brown sugar", "powdered sugar", "honey", "maple syrup", "corn syrup",
    "golden syrup", "molasses", "agave", "chocolate", "chocolate chip", "cocoa", "vanilla",
    "vanilla extract", "caramel", "marshmallow", "sprinkles", "frosting", "icing", "jam",
    "preserves", "marmalade", "condensed milk", "whipped cream", "whipped topping",
    "cool whip", "cake mix", "pudding mix", "graham cracker", "nutella", "candy",
    "sweetener", "raisin", "cinnamon", "banana", "strawberry", "strawberries", "blueberry",
    "blueberries", "raspberry", "raspberries", "peach", "peaches", "cherry", "cherries",
    "mango", "pineapple", "cream cheese", "mascarpone",
)  # fmt: skip
SWEET_EXCLUDE = ("sugar snap pea", "cherry tomato", "banana pepper")

LIQUID = (
    "water", "broth", "stock", "bouillon", "consomme", "milk", "buttermilk", "coconut milk",
    "almond milk", "soy milk", "juice", "wine", "beer", "cider", "sake", "coffee", "tea",
    "soda", "club soda", "ginger ale", "lemonade", "vodka", "rum", "tequila", "gin",
    "whiskey", "bourbon", "liqueur", "ice", "ice cube",
)  # fmt: skip
LIQUID_EXCLUDE = (
    "water chestnut", "milk chocolate", "powdered milk", "dry milk", "lemon juice",
    "lime juice", "ice cream", "tea tree", "rose water",
)  # fmt: skip

GREEN = (
    "spinach", "kale", "lettuce", "romaine", "arugula", "rocket", "watercress", "chard",
    "collard", "collard greens", "greens", "bok choy", "pak choi", "cabbage", "broccoli",
    "broccolini", "brussels sprout", "asparagus", "green bean", "string bean", "snap pea",
    "snow pea", "pea", "edamame", "zucchini", "courgette", "cucumber", "celery",
    "green pepper", "green bell pepper", "jalapeno", "serrano", "poblano", "green chile",
    "green chili", "green onion", "scallion", "spring onion", "chive", "leek", "avocado",
    "okra", "artichoke", "endive", "escarole", "basil", "parsley", "cilantro", "coriander",
    "mint", "dill", "tarragon", "pesto", "matcha", "green tea", "tomatillo", "green olive",
    "kiwi", "green apple", "pistachio",
)  # fmt: skip
GREEN_EXCLUDE = (
    "red cabbage", "coriander seed", "ground coriander", "celery seed", "celery salt",
    "chick pea", "chick peas", "black eyed pea", "black-eyed pea", "mint extract",
    "dried parsley", "dried basil", "dried mint", "dried dill",
)  # fmt: skip

DESSERT_TITLE = (
    "cake", "cupcake", "cheesecake", "cookie", "brownie", "muffin", "pudding", "fudge",
    "candy", "dessert", "frosting", "icing", "cobbler", "crumble", "sorbet", "ice cream",
    "mousse", "meringue", "macaron", "donut", "doughnut", "cinnamon roll", "custard",
    "parfait", "sundae", "smoothie", "milkshake", "shake", "scone", "truffle",
)  # fmt: skip
SAVOURY_TITLE = (
    "soup", "stew", "chili", "curry", "steak", "burger", "sandwich", "pizza", "lasagna",
    "casserole", "roast", "stir fry", "taco", "enchilada", "quesadilla", "omelet",
    "omelette", "meatloaf", "salsa", "chowder",
)  # fmt: skip
WATERY_TITLE = (
    "soup", "stew", "chowder", "bisque", "broth", "consomme", "gumbo", "pho", "ramen",
    "gazpacho", "minestrone", "smoothie", "shake", "milkshake", "punch", "lemonade",
    "cocktail", "martini", "margarita", "sangria", "tea", "latte", "drink", "juice",
    "cider", "mojito", "daiquiri", "eggnog", "hot chocolate",
)  # fmt: skip


def _pattern(terms: Iterable[str]) -> re.Pattern[str]:
    # Longest terms first so "brown sugar" wins over "sugar" in the alternation.
    alts = "|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True))
    return re.compile(rf"\b(?:{alts})(?:e?s)?\b")


_SAVOURY = (_pattern(SAVOURY), _pattern(SAVOURY_EXCLUDE))
_SWEET = (_pattern(SWEET), _pattern(SWEET_EXCLUDE))
_LIQUID = (_pattern(LIQUID), _pattern(LIQUID_EXCLUDE))
_GREEN = (_pattern(GREEN), _pattern(GREEN_EXCLUDE))
_DESSERT_TITLE = _pattern(DESSERT_TITLE)
_SAVOURY_TITLE = _pattern(SAVOURY_TITLE)
_WATERY_TITLE = _pattern(WATERY_TITLE)


def _is(name: str, lexicon: tuple[re.Pattern[str], re.Pattern[str]]) -> bool:
    include, exclude = lexicon
    name = name.lower()
    return bool(include.search(name)) and not exclude.search(name)


def _ingredients(record: dict[str, Any]) -> list[str]:
    return [str(x).lower() for x in record.get("ingredients") or []]


def _title(record: dict[str, Any]) -> str:
    return str(record.get("title") or "").lower()


# --------------------------------------------------------------------------- proxies


def savoriness(record: dict[str, Any]) -> float:
    """Savoury-minus-sweet evidence, ``(S - W) / (S + W + 1)`` in (-1, 1).

    Args:
        record: a recipe dict with ``title`` and ``ingredients``.

    Returns:
        > 0 for savoury recipes (stews, steaks), < 0 for sweet ones (cakes), 0 without
        evidence.
    """
    ingrs = _ingredients(record)
    s = sum(_is(x, _SAVOURY) for x in ingrs) + bool(_SAVOURY_TITLE.search(_title(record)))
    w = sum(_is(x, _SWEET) for x in ingrs) + bool(_DESSERT_TITLE.search(_title(record)))
    return float((s - w) / (s + w + 1))


def wateriness(record: dict[str, Any]) -> float:
    """``0.5 * share of liquid ingredients + 0.5 * [soup, stew or drink title]`` in [0, 1].

    Args:
        record: a recipe dict with ``title`` and ``ingredients``.

    Returns:
        High for soups and drinks, low for salads and baked goods.
    """
    ingrs = _ingredients(record)
    share = float(np.mean([_is(x, _LIQUID) for x in ingrs])) if ingrs else 0.0
    return 0.5 * share + 0.5 * float(bool(_WATERY_TITLE.search(_title(record))))


def greenness(record: dict[str, Any]) -> float:
    """Share of ingredients that are green vegetables or fresh green herbs, in [0, 1].

    Args:
        record: a recipe dict with ``ingredients``.

    Returns:
        The share; 0 for a recipe without ingredients.
    """
    ingrs = _ingredients(record)
    return float(np.mean([_is(x, _GREEN) for x in ingrs])) if ingrs else 0.0


def _nutrient_factor(nutrient: str) -> Callable[[dict[str, Any]], float]:
    def factor(record: dict[str, Any]) -> float:
        nutr = record.get("nutrition")
        if not nutr or nutrient not in nutr or nutr[nutrient] is None:
            return float("nan")
        return float(nutr[nutrient])

    factor.__name__ = nutrient
    factor.__doc__ = f"{nutrient} per 100 g from the nutrition file; NaN when absent."
    return factor


energy = _nutrient_factor("energy")
fat = _nutrient_factor("fat")
protein = _nutrient_factor("protein")
salt = _nutrient_factor("salt")
saturates = _nutrient_factor("saturates")
sugars = _nutrient_factor("sugars")

LEXICON_FACTORS: dict[str, Callable[[dict[str, Any]], float]] = {
    "savoriness": savoriness,
    "wateriness": wateriness,
    "greenness": greenness,
}
NUTRITION_FACTORS: dict[str, Callable[[dict[str, Any]], float]] = {
    "energy": energy,
    "fat": fat,
    "protein": protein,
    "salt": salt,
    "saturates": saturates,
    "sugars": sugars,
}
if tuple(NUTRITION_FACTORS) != NUTRIENTS:  # the reader's nutrient names are the source
    raise ImportError(f"NUTRITION_FACTORS {tuple(NUTRITION_FACTORS)} != NUTRIENTS {NUTRIENTS}")


def food_factor_matrix(
    records: Iterable[dict[str, Any]], *, nutrition: bool | str = "auto"
) -> tuple[np.ndarray, list[str]]:
    """Scores every record with every proxy.

    Args:
        records: recipe dicts (see :class:`~jaxmr.data.recipe1m.Recipe1MReader`).
        nutrition: ``"auto"`` adds the nutrient columns when any record has nutrition,
            ``True`` always, ``False`` never.

    Returns:
        ``(factors [N, k] float64, names)``: the three lexicon proxies, then nutrients
        (NaN for records without nutrition).
    """
    records = list(records)
    with_nutr = nutrition is True or (
        nutrition == "auto" and any(r.get("nutrition") for r in records)
    )
    fns = dict(LEXICON_FACTORS)
    if with_nutr:
        fns.update(NUTRITION_FACTORS)
    mat = np.array([[fn(r) for fn in fns.values()] for r in records], np.float64)
    return mat.reshape(len(records), len(fns)), list(fns)


# --------------------------------------------------------------------------- alignment


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Column-wise ranks (1-based), ties sharing their average rank."""
    out = np.empty(x.shape, np.float64)
    for j in range(x.shape[1]):
        col = x[:, j]
        order = np.argsort(col, kind="mergesort")
        _, inv, counts = np.unique(col[order], return_inverse=True, return_counts=True)
        mean_rank = np.bincount(inv, weights=np.arange(1, len(col) + 1)) / counts
        out[order, j] = mean_rank[inv]
    return out


def _group_alignment(
    factors: np.ndarray, latents: np.ndarray, cols: Sequence[int], seed: int
) -> dict[str, Any] | None:
    rows = np.all(np.isfinite(factors[:, cols]), axis=1)
    if rows.sum() < 8:  # the weak MCC fits on one half and scores the other: >= 4 rows each
        return None
    # Pearson on average ranks is Spearman, so mcc_report's matching is a Spearman one.
    rep = mcc_report(
        _average_ranks(factors[rows][:, cols]), _average_ranks(latents[rows]), seed=seed
    )
    pairs = rep["matching"]
    return {
        "factors": [int(cols[i]) for i in pairs[:, 0]],
        "latents": pairs[:, 1].astype(int).tolist(),
        "matched_spearman": [float(rep["corr"][i, j]) for i, j in pairs],
        "mcc": rep["mcc_strong"],
        "mcc_weak": rep["mcc_weak"],
        "n": int(rows.sum()),
    }


def food_factor_alignment(
    latents: Any, factors: Any, names: Sequence[str], *, seed: int = 0
) -> dict[str, Any]:
    """Spearman correlation of every latent with every factor, and MCC after matching.

    Spearman per factor uses the rows where that factor is finite (nutrients are NaN for
    recipes outside the nutrition file). MCC matches factors to latents one-to-one by
    Hungarian matching on |Spearman| (via :func:`jaxmr.metrics.mcc.mcc_report` on ranks),
    separately for the lexicon proxies (all rows) and the nutrients (rows with nutrition).

    Args:
        latents: ``[N, d]`` learned latents (e.g. posterior means on the test set).
        factors: ``[N, k]`` from :func:`food_factor_matrix`.
        names: the ``k`` factor names.
        seed: seed of the weak-MCC split.

    Returns:
        dict with ``names``; ``spearman`` ``[k, d]`` (NaN for a factor with < 4 finite
        rows); ``best_latent`` ``[k]`` (argmax |Spearman|, -1 if undefined); ``lexicon``
        and ``nutrition`` (None when not computable: fewer than 8 rows), each a dict with matched
        ``factors``/``latents`` index lists, ``matched_spearman`` (signed), ``mcc``,
        ``mcc_weak`` and ``n`` rows.

    References:
        Kim, Guerrero, Pavlovic, "Learning Disentangled Latent Factors from Paired Data in
        Cross-Modal Retrieval: An Implicit Identifiable VAE Approach", ACM MM 2021
        (arXiv 2012.00682): savoriness/wateriness/greenness factors.
    """
    z = np.asarray(latents, np.float64)
    f = np.asarray(factors, np.float64)
    names = list(names)
    if z.ndim != 2 or f.ndim != 2 or z.shape[0] != f.shape[0] or f.shape[1] != len(names):
        raise ValueError(
            f"expected latents [N, d], factors [N, k] and k names; got latents {z.shape}, "
            f"factors {f.shape}, {len(names)} names"
        )
    if not np.all(np.isfinite(z)):
        raise ValueError(f"latents (shape {z.shape}) contain NaN or inf")
    rho = np.full((f.shape[1], z.shape[1]), np.nan)
    for j in range(f.shape[1]):
        rows = np.isfinite(f[:, j])
        if rows.sum() >= 4:
            rho[j] = correlation_matrix(f[rows, j : j + 1], z[rows], method="spearman")[0]
    best = np.where(
        np.all(np.isnan(rho), axis=1), -1, np.argmax(np.nan_to_num(np.abs(rho), nan=-1), axis=1)
    )
    lex = [i for i, n in enumerate(names) if n in LEXICON_FACTORS]
    nut = [i for i, n in enumerate(names) if n in NUTRITION_FACTORS]
    return {
        "names": names,
        "spearman": rho,
        "best_latent": best.astype(int),
        "lexicon": _group_alignment(f, z, lex, seed) if lex else None,
        "nutrition": _group_alignment(f, z, nut, seed) if nut else None,
    }
