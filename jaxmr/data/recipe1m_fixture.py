"""A tiny Recipe1M copy in the exact published format, with three planted food factors.

Tests and smoke runs cannot use the real Recipe1M (it needs registration and is ~100 GB);
:func:`make_recipe1m_fixture` writes a few dozen recipes as ``layer1.json``,
``layer2.json``, ``det_ingrs.json``, ``recipes_with_nutritional_info.json`` and JPEGs under
``images/<partition>/<i0>/<i1>/<i2>/<i3>/<image id>``.

With ``planted_factor=True`` three independent latents per recipe, each ~ U(0, 1), drive
both modalities (:data:`PLANTED_FACTORS`; :attr:`FixtureInfo.factors` holds the truth):

- **greenness** g: the image background is a blend of brown and green with weight g; each of
  4 ingredient slots is a green vegetable or herb with probability g.
- **wateriness** w: the food inside the plate turns from yellow to blue with w; each of 4
  slots is a liquid (water, milk, juice, wine, ...) with probability w, and the dish of the
  title is a soup, stew or drink when w > 0.5.
- **savoriness** s: the food inside the plate turns from light to dark with s; each of 3
  slots is savoury (meat, onion, cheese, ...) with probability s, each of 3 others sweet
  with probability 1 - s, and the dish is savoury when s > 0.5 (soup, stir fry) and sweet
  otherwise (smoothie, cake).

Colours move along directions that do not touch one another's image statistics: g only the
background's green-minus-red, w only the food's blue, s only the food's red-and-green level.
The ingredient lexicons are the ones :mod:`jaxmr.data.food_factors` scores, so its proxies
track the planted factors. With ``planted_factor=False`` the image uses independent draws of
the three factors (the text keeps the recorded ones).

With ``defects=True`` the copy also holds the faults the reader must count, not crash on:
recipes with no image entry, a missing image file, a corrupt JPEG beside a good one, a
recipe whose only image is corrupt, one whose ingredients are all flagged invalid, and
invalid/messy ``det_ingrs`` entries in every recipe.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from jaxmr.data.recipe1m import NUTRITION, image_relpath

PLANTED_FACTORS = ("greenness", "wateriness", "savoriness")

GREEN = (
    "spinach", "kale", "basil", "parsley", "broccoli", "cucumber", "green beans", "peas",
    "zucchini", "lettuce", "cilantro", "asparagus", "celery", "arugula", "mint",
)  # fmt: skip
LIQUID = (
    "water", "milk", "apple juice", "orange juice", "white wine", "coconut milk",
    "buttermilk", "beer", "almond milk", "soy milk",
)  # fmt: skip
SAVOURY = (
    "chicken", "beef", "bacon", "pork", "onion", "garlic", "mushrooms", "parmesan cheese",
    "cheddar cheese", "soy sauce", "black pepper", "tomatoes", "shrimp", "cumin",
)  # fmt: skip
SWEET = (
    "sugar", "brown sugar", "honey", "maple syrup", "chocolate chips", "cocoa",
    "vanilla extract", "strawberries", "banana", "cinnamon", "raisins", "blueberries",
)  # fmt: skip

# Dish of the title by (watery, savoury) quadrant, with ingredients no lexicon scores.
_DISHES = {
    (True, True): {"soup": ("potatoes", "carrots", "salt"), "stew": ("potatoes", "flour")},
    (True, False): {"smoothie": ("yogurt", "oats"), "milkshake": ("yogurt", "ice cream")},
    (False, True): {"stir fry": ("rice", "vegetable oil"), "salad": ("olive oil", "vinegar")},
    (False, False): {"cake": ("flour", "butter", "eggs"), "cookies": ("flour", "butter", "salt")},
}
_ADJECTIVES = ("easy", "classic", "grandma's", "quick", "hearty", "fresh", "spicy", "simple")
_BROWN = np.array([176.0, 112.0, 58.0])
_GREENRGB = np.array([64.0, 168.0, 72.0])
_QUANTITIES = ("1 cup", "2 tablespoons", "1/2 teaspoon", "3", "200 g", "1 pinch of")


@dataclasses.dataclass
class FixtureInfo:
    """What :func:`make_recipe1m_fixture` wrote, for tests to check a reader against.

    Attributes:
        root: the fixture's root folder.
        ids: every recipe id, in ``layer1.json`` order.
        partition: recipe id -> partition.
        factors: factor name (:data:`PLANTED_FACTORS`) -> {recipe id -> planted value in
            [0, 1]}.
        dish: recipe id -> dish word of the title ("soup", "cake", ...).
        no_image_ids: recipes without a ``layer2.json`` entry.
        missing_file_ids: recipes whose only listed image file is not on disk.
        corrupt_only_ids: recipes whose only image is a corrupt JPEG.
        corrupt_extra_ids: recipes with a good image and a corrupt one.
        no_valid_ingredient_ids: recipes whose ``det_ingrs`` entries are all invalid.
        nutrition_ids: recipes listed in the nutrition file.
        n_images: image files written (corrupt ones included).
    """

    root: str
    ids: list[str]
    partition: dict[str, str]
    factors: dict[str, dict[str, float]]
    dish: dict[str, str]
    no_image_ids: list[str]
    missing_file_ids: list[str]
    corrupt_only_ids: list[str]
    corrupt_extra_ids: list[str]
    no_valid_ingredient_ids: list[str]
    nutrition_ids: list[str]
    n_images: int

    @property
    def greenness(self) -> dict[str, float]:
        """recipe id -> planted greenness."""
        return self.factors["greenness"]

    @property
    def wateriness(self) -> dict[str, float]:
        """recipe id -> planted wateriness."""
        return self.factors["wateriness"]

    @property
    def savoriness(self) -> dict[str, float]:
        """recipe id -> planted savoriness."""
        return self.factors["savoriness"]

    @property
    def clean_ids(self) -> list[str]:
        """Recipes a reader with images required and decode checks should yield."""
        bad = set(
            self.no_image_ids
            + self.missing_file_ids
            + self.corrupt_only_ids
            + self.no_valid_ingredient_ids
        )
        return [i for i in self.ids if i not in bad]


def _capitalised(text: str) -> str:
    # str.title() would give "Grandma'S".
    return " ".join(w[:1].upper() + w[1:] for w in text.split())


def _hex_id(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        s = "".join(rng.choice(list("0123456789abcdef"), size=10))
        if s not in used:
            used.add(s)
            return s


def food_colour(wateriness: float, savoriness: float) -> np.ndarray:
    """RGB of the food inside the plate: red = green level falls with savoriness (light
    dessert to dark roast), blue rises with wateriness (dry yellow to blue broth)."""
    level = 225.0 - 135.0 * savoriness
    return np.array([level, level, (0.3 + 0.7 * wateriness) * level + 30.0 * wateriness])


def _image(
    rng: np.random.Generator, planted: tuple[float, float, float], size: tuple[int, int]
) -> np.ndarray:
    g, w, s = planted
    width, h = size
    img = (1.0 - g) * _BROWN + g * _GREENRGB + rng.normal(0.0, 12.0, size=(h, width, 3))
    # A white plate (ellipse) in the middle holding the food, so images are not flat fields.
    yy, xx = np.mgrid[0:h, 0:width]
    plate = ((xx - width / 2) / (0.45 * width)) ** 2 + ((yy - h / 2) / (0.45 * h)) ** 2
    food = plate <= 0.75
    img[food] = food_colour(w, s) + rng.normal(0.0, 8.0, size=(int(food.sum()), 3))
    img[(plate > 0.75) & (plate < 1.0)] = 235.0
    return np.clip(img, 0, 255).astype(np.uint8)


def _ingredients(rng: np.random.Generator, planted: tuple[float, float, float], base):
    """Base ingredients plus green (4 slots, p = g), liquid (4, p = w), savoury (3, p = s)
    and sweet (3, p = 1 - s) ones, shuffled; the green ones are also returned."""
    g, w, s = planted
    picks = []
    for lexicon, slots, p in ((GREEN, 4, g), (LIQUID, 4, w), (SAVOURY, 3, s), (SWEET, 3, 1 - s)):
        picks.append(list(rng.choice(lexicon, size=rng.binomial(slots, p), replace=False)))
    names = list(base) + [x for group in picks for x in group]
    return [names[k] for k in rng.permutation(len(names))], picks[0]


def make_recipe1m_fixture(
    root: str | os.PathLike,
    n: int = 40,
    *,
    seed: int = 0,
    planted_factor: bool = True,
    image_size: tuple[int, int] = (40, 32),
    defects: bool = True,
    nutrition_fraction: float = 0.5,
) -> FixtureInfo:
    """Writes a tiny Recipe1M copy in the published format under ``root``.

    Args:
        root: output folder (created; existing fixture files are overwritten).
        n: number of recipes (at least 12 when ``defects=True``).
        seed: seed of every random choice (ids, factors, partitions, pixels).
        planted_factor: whether the three factors drive the images as well as the text.
        image_size: ``(width, height)`` of the JPEGs (non-square to exercise resizing).
        defects: whether to include the faults listed in the module docstring.
        nutrition_fraction: share of recipes written to the nutrition file.

    Returns:
        A :class:`FixtureInfo` describing what was written.
    """
    from PIL import Image  # noqa: PLC0415 (fixture-only dependency)

    if defects and n < 12:
        raise ValueError(f"n must be at least 12 with defects=True, got n={n}")
    rng = np.random.default_rng(seed)
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    used: set[str] = set()
    ids = [_hex_id(rng, used) for _ in range(n)]
    # Deterministic partition shares ~ 60/20/20 with every partition non-empty.
    parts = ["train"] * n
    for i in range(n):
        parts[i] = ("train", "train", "train", "val", "test")[i % 5]
    parts = list(rng.permutation(parts))
    truth = rng.uniform(0.0, 1.0, size=(n, len(PLANTED_FACTORS)))
    shown = truth if planted_factor else rng.uniform(0.0, 1.0, size=truth.shape)

    # Fault roles on fixed positions (after the permutation above they are spread over
    # partitions); the train recipes at the end keep the clean majority.
    roles: dict[int, str] = {}
    if defects:
        for k, role in enumerate(
            ("no_image", "no_image", "missing_file", "corrupt_only", "corrupt_extra", "no_valid")
        ):
            roles[2 * k + 1] = role

    layer1, layer2, dets, nutr = [], [], [], []
    info = FixtureInfo(
        root, ids, {}, {f: {} for f in PLANTED_FACTORS}, {}, [], [], [], [], [], [], 0
    )
    for i, rid in enumerate(ids):
        role = roles.get(i)
        planted = tuple(float(v) for v in truth[i])
        savoury = planted[2] > 0.5
        dishes = _DISHES[(planted[1] > 0.5, savoury)]
        dish = list(dishes)[i % 2]
        ingr_names, green = _ingredients(rng, planted, dishes[dish])
        title = _capitalised(f"{rng.choice(_ADJECTIVES)} {dish}")
        if len(green) >= 2:
            title = f"{title} with {_capitalised(green[0])}"
        info.partition[rid] = parts[i]
        for name, value in zip(PLANTED_FACTORS, planted, strict=True):
            info.factors[name][rid] = value
        info.dish[rid] = dish

        layer1.append(
            {
                "ingredients": [{"text": f"{rng.choice(_QUANTITIES)} {x}"} for x in ingr_names],
                "url": f"http://www.example.com/recipe/{rid}",
                "partition": parts[i],
                "title": title,
                "id": rid,
                "instructions": [
                    {"text": f"Prepare the {', '.join(ingr_names[:3])}."},
                    {"text": f"Cook the {dish} and serve."},
                ],
            }
        )
        # det_ingrs: messy capitalisation/punctuation that clean-up must fix, one invalid
        # quantity-only entry, and one duplicate.
        det_text = [x.title() + ("," if j % 3 == 0 else "") for j, x in enumerate(ingr_names)]
        det_text += ["2", ingr_names[0]]
        valid = [True] * len(ingr_names) + [False, True]
        if role == "no_valid":
            valid = [False] * len(det_text)
            info.no_valid_ingredient_ids.append(rid)
        dets.append({"valid": valid, "id": rid, "ingredients": [{"text": t} for t in det_text]})

        if role == "no_image":
            info.no_image_ids.append(rid)
        else:
            single = role in ("missing_file", "corrupt_only", "corrupt_extra")
            n_img = 1 if single else 1 + int(rng.integers(0, 2))
            image_ids = [_hex_id(rng, used) + ".jpg" for _ in range(n_img)]
            if role == "corrupt_extra":
                image_ids.append(_hex_id(rng, used) + ".jpg")
            layer2.append(
                {
                    "id": rid,
                    "images": [
                        {"id": im, "url": f"http://www.example.com/img/{im}"} for im in image_ids
                    ],
                }
            )
            for k, im in enumerate(image_ids):
                path = os.path.join(root, "images", image_relpath(im, parts[i]))
                if role == "missing_file":
                    info.missing_file_ids.append(rid)
                    continue
                os.makedirs(os.path.dirname(path), exist_ok=True)
                corrupt = role == "corrupt_only" or (
                    role == "corrupt_extra" and k == len(image_ids) - 1
                )
                if corrupt:
                    with open(path, "wb") as f:
                        f.write(b"\xff\xd8\xff\xe0 this is not a JPEG " + bytes(range(64)))
                else:
                    pixels = _image(rng, tuple(shown[i]), image_size)
                    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
                info.n_images += 1
            if role == "corrupt_only":
                info.corrupt_only_ids.append(rid)
            if role == "corrupt_extra":
                info.corrupt_extra_ids.append(rid)

        if rng.uniform() < nutrition_fraction:
            info.nutrition_ids.append(rid)
            sweet = not savoury
            values = {
                "energy": float(rng.uniform(300, 500) if sweet else rng.uniform(40, 250)),
                "fat": float(rng.uniform(5, 25)),
                "protein": float(rng.uniform(1, 6) if sweet else rng.uniform(4, 20)),
                "salt": float(rng.uniform(0.05, 0.3) if sweet else rng.uniform(0.4, 1.5)),
                "saturates": float(rng.uniform(1, 10)),
                "sugars": float(rng.uniform(20, 45) if sweet else rng.uniform(0.5, 5)),
            }
            nutr.append(
                {
                    "id": rid,
                    "title": title,
                    "ingredients": [{"text": x} for x in ingr_names],
                    "instructions": layer1[-1]["instructions"],
                    "partition": parts[i],
                    "url": layer1[-1]["url"],
                    "nutr_values_per100g": values,
                    "fsa_lights_per100g": {
                        "fat": "orange",
                        "salt": "green",
                        "saturates": "orange",
                        "sugars": "red" if sweet else "green",
                    },
                    "nutr_per_ingredient": [],
                    "quantity": [],
                    "unit": [],
                    "weight_per_ingr": [],
                }
            )

    # One indented file and three compact ones, so the streaming parser meets both forms.
    for name, data, indent in (
        ("layer1.json", layer1, 4),
        ("layer2.json", layer2, None),
        ("det_ingrs.json", dets, None),
        (NUTRITION, nutr, None),
    ):
        with open(os.path.join(root, name), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent)
    return info
