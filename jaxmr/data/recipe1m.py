"""Streaming reader for a local copy of Recipe1M in its published format.

Recipe1M (Salvador et al., CVPR 2017; Marin et al., TPAMI 2019) is distributed after
registration as a few large JSON files and per-partition image tarballs. This reader expects
them extracted under one root folder, exactly as published::

    root/layer1.json        [{id, title, ingredients: [{text}], instructions: [{text}],
                              partition, url}, ...]                  (~1M recipes)
    root/layer2.json        [{id, images: [{id, url}, ...]}, ...]  (recipes with images)
    root/det_ingrs.json     [{id, ingredients: [{text}], valid: [bool]}, ...]
    root/images/<partition>/<i[0]>/<i[1]>/<i[2]>/<i[3]>/<i>   i = image id ("3e233001e2.jpg")
    root/recipes_with_nutritional_info.json                     (optional, ~51k recipes)

The image folders are keyed by the first four characters of the *image* id (as in the
im2recipe reference loader), not the recipe id.

Memory stays bounded: the big JSON arrays are parsed one element at a time
(:func:`iter_json_array`), and ``layer1.json`` and ``det_ingrs.json`` are walked in lockstep
(the published files list the same ids in the same order). What is held in memory is the
image-id list per recipe from ``layer2.json`` (~400k short lists) and the nutrition values
(~51k small dicts). Recipes that cannot be used are counted in a :class:`SkipReport`, never
raised on.

References:
    Salvador et al., "Learning Cross-modal Embeddings for Cooking Recipes and Food Images",
    CVPR 2017. Marin et al., "Recipe1M+: A Dataset for Learning Cross-Modal Embeddings for
    Cooking Recipes and Food Images", TPAMI 2019.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

logger = logging.getLogger(__name__)

LAYER1 = "layer1.json"
LAYER2 = "layer2.json"
DET_INGRS = "det_ingrs.json"
NUTRITION = "recipes_with_nutritional_info.json"
IMAGES = "images"
PARTITIONS = ("train", "val", "test")
NUTRIENTS = ("energy", "fat", "protein", "salt", "saturates", "sugars")

EXPECTED_LAYOUT = """\
expected the published Recipe1M layout under the root folder:
  root/layer1.json         recipes (id, title, ingredients, instructions, partition, url)
  root/layer2.json         image ids per recipe id
  root/det_ingrs.json      detected ingredients with `valid` flags
  root/images/<partition>/<i[0]>/<i[1]>/<i[2]>/<i[3]>/<i>
                           i = image id, e.g. images/train/3/e/2/3/3e233001e2.jpg
  root/recipes_with_nutritional_info.json   (optional)"""


class Recipe1MLayoutError(FileNotFoundError):
    """A Recipe1M file or folder is missing or not where the published layout puts it."""


class Recipe1MFormatError(ValueError):
    """A Recipe1M JSON file is not the JSON array of records the published format has."""


# --------------------------------------------------------------------------- JSON streaming

_WS = re.compile(r"[ \t\n\r]*")
_DELIMITERS = ",] \t\n\r"


def iter_json_array(path: str | os.PathLike, *, chunk_chars: int = 1 << 20) -> Iterator[Any]:
    """Yields the elements of a top-level JSON array one at a time.

    ``json.load`` on ``layer1.json`` (~1.3 GB) needs several times that in memory; this
    reads ``chunk_chars`` characters at a time and decodes each element with
    ``json.JSONDecoder.raw_decode``, so memory is one chunk plus one element.

    Args:
        path: a file holding one JSON array.
        chunk_chars: characters read per chunk.

    Returns:
        An iterator over the array's elements.

    Raises:
        Recipe1MFormatError: if the file is not one well-formed JSON array (names the file
            and the character offset).
    """
    decoder = json.JSONDecoder()
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        buf, pos, base, eof = "", 0, 0, False

        def fill() -> None:
            nonlocal buf, pos, base, eof
            data = f.read(chunk_chars)
            if not data:
                eof = True
            base += pos
            buf, pos = buf[pos:] + data, 0

        def next_token() -> str:
            # Returns the next non-whitespace character ("" at the end of the file).
            nonlocal pos
            while True:
                pos = _WS.match(buf, pos).end()
                if pos < len(buf) or eof:
                    return buf[pos] if pos < len(buf) else ""
                fill()

        def fail(what: str) -> Recipe1MFormatError:
            found = buf[pos : pos + 40]
            return Recipe1MFormatError(
                f"{path}: {what} at character {base + pos} (found {found!r}); "
                "Recipe1M files are each one JSON array of records"
            )

        if next_token() != "[":
            raise fail("expected a JSON array ('[')")
        pos += 1
        first = True
        while True:
            tok = next_token()
            if tok == "]":
                if not first:
                    raise fail("expected a value after ','")
                return
            if tok == "":
                raise fail("file ends inside the array (truncated download?)")
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError:
                    if eof:
                        raise fail("malformed JSON element") from None
                    fill()
                    continue
                # A number is not self-delimiting: "-0.125" cut after "-0." decodes as -0.
                # Accept it only when a delimiter follows inside the buffer.
                cut = end == len(buf) or (
                    isinstance(obj, (int, float)) and buf[end] not in _DELIMITERS
                )
                if cut and not eof:
                    fill()
                    continue
                break
            yield obj
            pos = end
            tok = next_token()
            if tok == "]":
                return
            if tok != ",":
                raise fail("expected ',' or ']' after an array element")
            pos += 1
            first = False
            if pos > chunk_chars:
                base += pos
                buf, pos = buf[pos:], 0


# --------------------------------------------------------------------------- clean-up

# The ingredient clean-up of the inverse-cooking Recipe1M vocabulary builder (Salvador et al.,
# CVPR 2019, build_vocab.py): lower-case, drop digits, '&' and "'n" -> 'and', drop a few
# punctuation marks. Spaces are kept (text towers read words, not vocabulary tokens).
_REPLACE = (("&", " and "), ("'n", " and "))
_DROP = re.compile(r"[%,.#\[\]!?\d]")
_SPACES = re.compile(r"\s+")


def clean_ingredient(text: str) -> str:
    """Normalises one detected ingredient name ('Fresh Basil,' -> 'fresh basil').

    Args:
        text: an ingredient string from ``det_ingrs.json``.

    Returns:
        The cleaned name; ``""`` if nothing is left.
    """
    text = text.lower()
    for old, new in _REPLACE:
        text = text.replace(old, new)
    text = _DROP.sub("", text)
    return _SPACES.sub(" ", text).strip()


def valid_ingredients(det_entry: dict[str, Any]) -> tuple[list[str], int]:
    """Cleaned ingredients of one ``det_ingrs.json`` entry whose ``valid`` flag is true.

    Args:
        det_entry: ``{"id", "ingredients": [{"text"}], "valid": [bool]}``.

    Returns:
        ``(names, n_dropped)``: cleaned, de-duplicated names in order, and how many entries
        were dropped (invalid flag, empty after clean-up, or duplicate).
    """
    ingrs = det_entry.get("ingredients") or []
    valid = det_entry.get("valid") or []
    names: list[str] = []
    seen: set[str] = set()
    for i, ingr in enumerate(ingrs):
        # A missing flag (valid shorter than ingredients) counts as invalid.
        if i >= len(valid) or not valid[i]:
            continue
        name = clean_ingredient(ingr.get("text", "") if isinstance(ingr, dict) else str(ingr))
        if name and name not in seen:
            seen.add(name)
            names.append(name)
    return names, len(ingrs) - len(names)


def image_relpath(image_id: str, partition: str) -> str:
    """Path of an image under the images folder: ``<partition>/<i0>/<i1>/<i2>/<i3>/<i>``."""
    return os.path.join(partition, image_id[0], image_id[1], image_id[2], image_id[3], image_id)


# --------------------------------------------------------------------------- skip report

_SKIP_REASONS = (
    "no_det_ingrs",
    "too_few_ingredients",
    "no_images",
    "no_readable_images",
)
_MAX_EXAMPLES = 5


@dataclasses.dataclass
class SkipReport:
    """What a pass over Recipe1M read, yielded and left out, with counts.

    Attributes:
        recipes_read: entries read from ``layer1.json``.
        recipes_yielded: records yielded.
        other_partition: recipes outside the requested partitions (filtered, not faults).
        no_det_ingrs: skipped: no ``det_ingrs.json`` entry for the id.
        too_few_ingredients: skipped: fewer valid ingredients than asked for.
        no_images: skipped (when images are required): no ``layer2.json`` entry.
        no_readable_images: skipped: every listed image file is missing or unreadable.
        missing_image_files: image files listed in ``layer2.json`` but not on disk.
        unreadable_images: image files on disk that could not be decoded.
        invalid_ingredients_dropped: ``det_ingrs`` entries dropped by the ``valid`` flag,
            clean-up or de-duplication (recipes are kept).
        with_nutrition: yielded records carrying nutrition values.
        examples: up to 5 example ids (or paths) per reason, for debugging.
    """

    recipes_read: int = 0
    recipes_yielded: int = 0
    other_partition: int = 0
    no_det_ingrs: int = 0
    too_few_ingredients: int = 0
    no_images: int = 0
    no_readable_images: int = 0
    missing_image_files: int = 0
    unreadable_images: int = 0
    invalid_ingredients_dropped: int = 0
    with_nutrition: int = 0
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def count(self, reason: str, example: str | None = None, n: int = 1) -> None:
        """Adds ``n`` to the counter ``reason`` and remembers an example id or path."""
        setattr(self, reason, getattr(self, reason) + n)
        if example is not None:
            ex = self.examples.setdefault(reason, [])
            if len(ex) < _MAX_EXAMPLES:
                ex.append(example)

    @property
    def recipes_skipped(self) -> int:
        """Recipes in the requested partitions that were read but not yielded."""
        return sum(getattr(self, r) for r in _SKIP_REASONS)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable) including ``recipes_skipped``."""
        d = dataclasses.asdict(self)
        d["recipes_skipped"] = self.recipes_skipped
        return d

    def summary(self) -> str:
        """One line per non-zero counter, for logs."""
        lines = [
            f"read {self.recipes_read} recipes, yielded {self.recipes_yielded}, "
            f"skipped {self.recipes_skipped}"
        ]
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("recipes_read", "recipes_yielded", "examples") or not v:
                continue
            ex = self.examples.get(f.name)
            lines.append(f"  {f.name}: {v}" + (f" (e.g. {', '.join(ex)})" if ex else ""))
        return "\n".join(lines)

    def log(self, log: logging.Logger, what: str) -> None:
        """Logs the summary: at WARNING (shown at the default log level of train.py and
        eval.py) when recipes were dropped, naming each reason (e.g. ``no_images: 2``), at
        INFO otherwise."""
        level = logging.WARNING if self.recipes_skipped else logging.INFO
        log.log(level, "%s: %s", what, self.summary().replace("\n", ";"))


# --------------------------------------------------------------------------- layout checks


def _missing(path: str, what: str, root: str) -> Recipe1MLayoutError:
    hints = []
    name = os.path.basename(path)
    if os.path.isdir(root):
        for entry in sorted(os.listdir(root)):
            sub = os.path.join(root, entry)
            if os.path.isdir(sub) and os.path.exists(os.path.join(sub, name)):
                hints.append(f"found {name} in {sub}: pass that folder as the root")
            if entry.endswith((".tar", ".tar.gz", ".tgz")):
                hints.append(f"{entry} in the root looks unextracted: extract it there")
    else:
        hints.append(f"the root folder {root} does not exist")
    hint = ("\n" + "\n".join(hints)) if hints else ""
    return Recipe1MLayoutError(f"missing {what}: {path}\n{EXPECTED_LAYOUT}{hint}")


@dataclasses.dataclass(frozen=True)
class Recipe1MFiles:
    """Resolved paths of one Recipe1M copy (see :func:`check_layout`)."""

    root: str
    layer1: str
    layer2: str
    det_ingrs: str
    images: str | None
    nutrition: str | None


def check_layout(
    root: str | os.PathLike,
    *,
    partitions: Sequence[str] = PARTITIONS,
    require_images: bool = True,
    images_dir: str | os.PathLike | None = None,
    nutrition: bool | str = "auto",
) -> Recipe1MFiles:
    """Checks that ``root`` holds Recipe1M in the published layout and returns the paths.

    Args:
        root: the Recipe1M folder.
        partitions: partitions that will be read; their image folders must exist when
            images are required.
        require_images: whether ``images/<partition>/`` folders are needed.
        images_dir: the images folder if not ``root/images``.
        nutrition: ``"auto"`` (use the nutrition file when present), ``True`` (require it)
            or ``False``.

    Returns:
        A :class:`Recipe1MFiles`.

    Raises:
        Recipe1MLayoutError: naming the missing file or folder and the expected layout.
        ValueError: on an unknown partition name.
    """
    root = os.path.expanduser(os.fspath(root))
    for p in partitions:
        if p not in PARTITIONS:
            raise ValueError(f"unknown partition {p!r}; Recipe1M partitions are {PARTITIONS}")
    paths = {}
    for key, name in (("layer1", LAYER1), ("layer2", LAYER2), ("det_ingrs", DET_INGRS)):
        paths[key] = os.path.join(root, name)
        if not os.path.isfile(paths[key]):
            raise _missing(paths[key], f"Recipe1M file {name}", root)
    images = None
    if require_images:
        images = (
            os.path.expanduser(os.fspath(images_dir))
            if images_dir is not None
            else os.path.join(root, IMAGES)
        )
        if not os.path.isdir(images):
            err = _missing(images, "images folder", root)
            if any(os.path.isdir(os.path.join(root, p)) for p in partitions):
                err = Recipe1MLayoutError(
                    f"{err}\nfound partition folders directly in {root}: move them into "
                    f"{images} or pass images_dir={root!r}"
                )
            raise err
        for p in partitions:
            if not os.path.isdir(os.path.join(images, p)):
                raise Recipe1MLayoutError(
                    f"missing image folder for partition {p!r}: {os.path.join(images, p)} "
                    f"(extract recipe1M_images_{p}.tar there, or pass partitions= without "
                    f"{p!r})\n{EXPECTED_LAYOUT}"
                )
    nutr = os.path.join(root, NUTRITION)
    if nutrition is True and not os.path.isfile(nutr):
        raise _missing(nutr, "nutrition file (nutrition=True)", root)
    return Recipe1MFiles(
        root=root,
        layer1=paths["layer1"],
        layer2=paths["layer2"],
        det_ingrs=paths["det_ingrs"],
        images=images,
        nutrition=nutr if (nutrition and os.path.isfile(nutr)) else None,
    )


# --------------------------------------------------------------------------- reader


def _texts(items: Any) -> list[str]:
    out = []
    for it in items or []:
        t = it.get("text", "") if isinstance(it, dict) else str(it)
        t = t.strip()
        if t:
            out.append(t)
    return out


def _read_images(path: str) -> dict[str, tuple[str, ...]]:
    index = {}
    for entry in iter_json_array(path):
        ids = tuple(im["id"] for im in entry.get("images", ()) if im.get("id"))
        if ids:
            index[entry["id"]] = ids
    return index


def _read_nutrition(path: str) -> dict[str, dict[str, float]]:
    table = {}
    for entry in iter_json_array(path):
        values = entry.get("nutr_values_per100g")
        if isinstance(values, dict):
            table[entry["id"]] = {k: float(values[k]) for k in NUTRIENTS if k in values}
    return table


def _image_ok(path: str, check: str) -> str | None:
    """None if usable, else the SkipReport counter to bump."""
    if check == "none":
        return None
    if not os.path.isfile(path):
        return "missing_image_files"
    if check == "decode":
        from PIL import Image  # noqa: PLC0415 (only needed for this mode)

        try:
            with Image.open(path) as im:
                im.load()
        except Exception:  # PIL raises many types for corrupt files  # noqa: BLE001
            return "unreadable_images"
    return None


class Recipe1MReader:
    """Iterates Recipe1M records, streaming, with a :class:`SkipReport` of what was left out.

    Each record is a dict::

        {"id": str, "title": str,
         "ingredients": [str],      # det_ingrs names with valid=True, cleaned, de-duplicated
         "instructions": [str], "partition": "train" | "val" | "test",
         "image_paths": [str],      # absolute paths of usable images (may be [] if
                                    # require_images=False)
         "nutrition": {energy, fat, protein, salt, saturates, sugars} per 100 g, or None}

    Iterating again re-reads the files and starts a fresh :attr:`report`.

    Args:
        root: the Recipe1M folder (see :data:`EXPECTED_LAYOUT`).
        partitions: partitions to yield.
        require_images: skip recipes without a usable image (counted).
        check_images: ``"exists"`` (stat each file), ``"decode"`` (open it with PIL; slow on
            the full set) or ``"none"``.
        images_dir: the images folder if not ``root/images``.
        nutrition: ``"auto"``, ``True`` or ``False`` (see :func:`check_layout`).
        min_ingredients: skip recipes with fewer valid ingredients (counted).
        max_recipes: stop after reading this many ``layer1`` entries (for quick looks).
        progress_every: log progress every this many ``layer1`` entries (0: never).
        progress: optional callback called with the :class:`SkipReport` at each progress
            step and at the end.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        partitions: Sequence[str] = PARTITIONS,
        require_images: bool = True,
        check_images: str = "exists",
        images_dir: str | os.PathLike | None = None,
        nutrition: bool | str = "auto",
        min_ingredients: int = 1,
        max_recipes: int | None = None,
        progress_every: int = 50_000,
        progress: Callable[[SkipReport], None] | None = None,
    ):
        if check_images not in ("exists", "decode", "none"):
            raise ValueError(
                f"check_images must be 'exists', 'decode' or 'none', got {check_images!r}"
            )
        self.files = check_layout(
            root,
            partitions=partitions,
            require_images=require_images,
            images_dir=images_dir,
            nutrition=nutrition,
        )
        self.partitions = tuple(partitions)
        self.require_images = require_images
        self.check_images = check_images if require_images else "none"
        self.min_ingredients = min_ingredients
        self.max_recipes = max_recipes
        self.progress_every = progress_every
        self.progress = progress
        self.report = SkipReport()

    def _progress(self) -> None:
        logger.info("recipe1m: %s", self.report.summary().replace("\n", ";"))
        if self.progress is not None:
            self.progress(self.report)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        report = self.report = SkipReport()
        files = self.files
        images = _read_images(files.layer2)
        nutrition = _read_nutrition(files.nutrition) if files.nutrition else {}
        det_iter = iter_json_array(files.det_ingrs)
        # det_ingrs entries read ahead of layer1 while looking for an id; stays empty for the
        # published files (same ids, same order), grows only if a copy is reordered.
        pending: dict[str, tuple[list[str], int]] = {}
        warned = False

        def det_for(rid: str) -> tuple[list[str], int] | None:
            nonlocal warned
            if rid in pending:
                return pending.pop(rid)
            for entry in det_iter:
                got = valid_ingredients(entry)
                if entry.get("id") == rid:
                    return got
                pending[entry.get("id")] = got
                if not warned and len(pending) > 10_000:
                    warned = True
                    logger.warning(
                        "recipe1m: %s and %s are not in the same order; buffering "
                        "det_ingrs entries (memory grows with the misalignment)",
                        files.layer1,
                        files.det_ingrs,
                    )
            return None

        for entry in iter_json_array(files.layer1):
            if self.max_recipes is not None and report.recipes_read >= self.max_recipes:
                break
            report.recipes_read += 1
            if self.progress_every and report.recipes_read % self.progress_every == 0:
                self._progress()
            rid = entry.get("id")
            det = det_for(rid)
            partition = entry.get("partition")
            if partition not in self.partitions:
                report.other_partition += 1
                continue
            if det is None:
                report.count("no_det_ingrs", rid)
                continue
            ingredients, dropped = det
            report.invalid_ingredients_dropped += dropped
            if len(ingredients) < self.min_ingredients:
                report.count("too_few_ingredients", rid)
                continue
            paths: list[str] = []
            if self.require_images:
                image_ids = images.get(rid, ())
                if not image_ids:
                    report.count("no_images", rid)
                    continue
                for image_id in image_ids:
                    path = os.path.join(files.images, image_relpath(image_id, partition))
                    fault = _image_ok(path, self.check_images)
                    if fault is None:
                        paths.append(path)
                    else:
                        report.count(fault, path)
                if not paths:
                    report.count("no_readable_images", rid)
                    continue
            nutr = nutrition.get(rid)
            if nutr is not None:
                report.with_nutrition += 1
            report.recipes_yielded += 1
            yield {
                "id": rid,
                "title": (entry.get("title") or "").strip(),
                "ingredients": ingredients,
                "instructions": _texts(entry.get("instructions")),
                "partition": partition,
                "image_paths": paths,
                "nutrition": nutr,
            }
        self._progress()


def iter_recipe1m(root: str | os.PathLike, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Shorthand for ``iter(Recipe1MReader(root, **kwargs))`` (no access to the report)."""
    return iter(Recipe1MReader(root, **kwargs))
