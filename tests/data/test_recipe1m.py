"""Tests for the streaming Recipe1M reader and the format fixture."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from jaxmr.data import recipe1m
from jaxmr.data.recipe1m_fixture import (
    GREEN,
    LIQUID,
    PLANTED_FACTORS,
    SAVOURY,
    SWEET,
    make_recipe1m_fixture,
)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe1m")
    return make_recipe1m_fixture(root, n=40, seed=0)


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------- JSON streaming

_VALUES = [
    {"id": "a", "x": [1, 2.5, -3e-7], "s": "caf\u00e9 \u201cq\u201d ,]["},
    12345678901234567890,
    -0.125,
    "plain",
    [],
    {},
    None,
    True,
    {"nested": {"deep": [{"k": "v" * 50}]}},
]


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 4])
def test_iter_json_array_matches_json_load(tmp_path, chunk, indent):
    path = _write(tmp_path / "a.json", json.dumps(_VALUES, indent=indent, ensure_ascii=False))
    assert list(recipe1m.iter_json_array(path, chunk_chars=chunk)) == _VALUES


def test_iter_json_array_numbers_cut_at_chunk_boundary(tmp_path):
    # With chunk 4, "[123456, 7]" is read as "[123", "456,", ... : 123 must not be taken.
    path = _write(tmp_path / "n.json", "[123456, 7]")
    assert list(recipe1m.iter_json_array(path, chunk_chars=4)) == [123456, 7]


def test_iter_json_array_empty(tmp_path):
    assert list(recipe1m.iter_json_array(_write(tmp_path / "e.json", "  [ \n ] "))) == []


@pytest.mark.parametrize(
    "text, what",
    [
        ('{"id": 1}', "expected a JSON array"),
        ('[{"id": 1}, {"id": 2', "malformed JSON element"),
        ('[{"id": 1},', "file ends inside the array"),
        ('[{"id": 1}, ]', "expected a value after ','"),
        ('[{"id": 1} {"id": 2}]', "expected ',' or ']'"),
    ],
)
def test_iter_json_array_errors_name_the_file(tmp_path, text, what):
    path = _write(tmp_path / "bad.json", text)
    with pytest.raises(recipe1m.Recipe1MFormatError, match=what) as err:
        list(recipe1m.iter_json_array(path, chunk_chars=5))
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- clean-up


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Fresh Basil,", "fresh basil"),
        ("Salt & Pepper", "salt and pepper"),
        ("mac 'n cheese", "mac and cheese"),
        ("2 Eggs.", "eggs"),
        ("  100% whole-wheat   flour! ", "whole-wheat flour"),
        ("[12]", ""),
    ],
)
def test_clean_ingredient(raw, clean):
    assert recipe1m.clean_ingredient(raw) == clean


def test_valid_ingredients_uses_flags_and_dedupes():
    entry = {
        "id": "x",
        "ingredients": [{"text": "Onion,"}, {"text": "1"}, {"text": "onion"}, {"text": "Leek"}],
        "valid": [True, False, True],  # shorter than ingredients: the last counts as invalid
    }
    names, dropped = recipe1m.valid_ingredients(entry)
    assert names == ["onion"]
    assert dropped == 3


def test_image_relpath_uses_image_id_prefix():
    assert recipe1m.image_relpath("3e233001e2.jpg", "train") == os.path.join(
        "train", "3", "e", "2", "3", "3e233001e2.jpg"
    )


# --------------------------------------------------------------------------- reader


def test_reader_yields_clean_recipes_and_counts_faults(fixture):
    reader = recipe1m.Recipe1MReader(fixture.root, check_images="decode")
    records = list(reader)
    assert [r["id"] for r in records] == fixture.clean_ids
    rep = reader.report
    assert rep.recipes_read == len(fixture.ids)
    assert rep.recipes_yielded == len(fixture.clean_ids)
    assert rep.no_images == len(fixture.no_image_ids)
    assert rep.too_few_ingredients == len(fixture.no_valid_ingredient_ids)
    assert rep.missing_image_files == len(fixture.missing_file_ids)
    # One corrupt-only recipe plus one corrupt extra image.
    assert rep.unreadable_images == len(fixture.corrupt_only_ids) + len(fixture.corrupt_extra_ids)
    assert rep.no_readable_images == len(fixture.missing_file_ids) + len(fixture.corrupt_only_ids)
    assert rep.recipes_skipped == len(fixture.ids) - len(fixture.clean_ids)
    assert set(rep.examples["no_images"]) == set(fixture.no_image_ids)
    assert "no_images: 2" in rep.summary()
    assert json.loads(json.dumps(rep.as_dict()))["recipes_skipped"] == rep.recipes_skipped


def test_reader_record_contents(fixture):
    records = {r["id"]: r for r in recipe1m.Recipe1MReader(fixture.root)}
    extra = records[fixture.corrupt_extra_ids[0]]
    # "exists" mode stats files only: the corrupt extra image is still listed.
    assert len(extra["image_paths"]) == 2
    for rid, rec in records.items():
        assert rec["partition"] == fixture.partition[rid]
        assert rec["title"] and rec["instructions"]
        assert set(rec.keys()) == {
            "id", "title", "ingredients", "instructions", "partition", "image_paths", "nutrition"
        }  # fmt: skip
        # Clean-up: lower case, no trailing comma, no quantity-only entries, no duplicates.
        assert all(x == x.lower() and not x.endswith(",") and x != "2" for x in rec["ingredients"])
        assert len(set(rec["ingredients"])) == len(rec["ingredients"])
        for p in rec["image_paths"]:
            rel = os.path.relpath(p, os.path.join(fixture.root, "images"))
            part, a, b, c, d, name = rel.split(os.sep)
            assert part == rec["partition"] and (a, b, c, d) == tuple(name[:4])
            assert os.path.isfile(p)
        assert (rec["nutrition"] is not None) == (rid in fixture.nutrition_ids)
        if rec["nutrition"] is not None:
            assert set(rec["nutrition"]) == set(recipe1m.NUTRIENTS)


def test_reader_partition_filter_and_no_images_mode(fixture):
    reader = recipe1m.Recipe1MReader(fixture.root, partitions=("test",))
    got = [r["id"] for r in reader]
    assert got and all(fixture.partition[i] == "test" for i in got)
    assert reader.report.other_partition == sum(p != "test" for p in fixture.partition.values())

    all_reader = recipe1m.Recipe1MReader(fixture.root, require_images=False)
    ids = [r["id"] for r in all_reader]
    want = [i for i in fixture.ids if i not in fixture.no_valid_ingredient_ids]
    assert ids == want
    assert all_reader.report.no_images == 0


def test_reader_handles_reordered_det_ingrs(fixture, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(fixture.root, root)
    dets = json.loads((root / "det_ingrs.json").read_text())
    (root / "det_ingrs.json").write_text(json.dumps(dets[::-1]))
    a = list(recipe1m.Recipe1MReader(fixture.root, require_images=False))
    b = list(recipe1m.Recipe1MReader(root, require_images=False))
    assert [r["ingredients"] for r in a] == [r["ingredients"] for r in b]


def test_reader_progress_and_max_recipes(fixture):
    seen = []
    reader = recipe1m.Recipe1MReader(
        fixture.root, progress_every=10, progress=lambda rep: seen.append(rep.recipes_read)
    )
    list(reader)
    assert seen == [10, 20, 30, 40, 40]
    short = recipe1m.Recipe1MReader(fixture.root, max_recipes=5, require_images=False)
    assert len(list(short)) <= 5 and short.report.recipes_read == 5


def test_reader_nutrition_modes(fixture, tmp_path):
    off = list(recipe1m.Recipe1MReader(fixture.root, nutrition=False))
    assert all(r["nutrition"] is None for r in off)
    root = tmp_path / "nonutr"
    shutil.copytree(fixture.root, root)
    os.remove(root / recipe1m.NUTRITION)
    assert all(r["nutrition"] is None for r in recipe1m.Recipe1MReader(root))
    with pytest.raises(recipe1m.Recipe1MLayoutError, match=recipe1m.NUTRITION):
        recipe1m.Recipe1MReader(root, nutrition=True)


# --------------------------------------------------------------------------- layout errors


@pytest.mark.parametrize("name", [recipe1m.LAYER1, recipe1m.LAYER2, recipe1m.DET_INGRS])
def test_missing_file_names_file_and_layout(fixture, tmp_path, name):
    root = tmp_path / "m"
    root.mkdir()
    for f in (recipe1m.LAYER1, recipe1m.LAYER2, recipe1m.DET_INGRS):
        if f != name:
            shutil.copy(os.path.join(fixture.root, f), root / f)
    with pytest.raises(recipe1m.Recipe1MLayoutError) as err:
        recipe1m.Recipe1MReader(root)
    msg = str(err.value)
    assert str(root / name) in msg
    assert "images/<partition>/<i[0]>/<i[1]>/<i[2]>/<i[3]>/<i>" in msg


def test_layout_hints(fixture, tmp_path):
    # Files one level down: the error points at the folder that has them.
    nested = tmp_path / "outer"
    shutil.copytree(fixture.root, nested / "recipe1M")
    with pytest.raises(recipe1m.Recipe1MLayoutError, match="pass that folder as the root"):
        recipe1m.Recipe1MReader(nested)
    # Partition folders directly under the root instead of under images/.
    flat = tmp_path / "flat"
    shutil.copytree(fixture.root, flat)
    for p in recipe1m.PARTITIONS:
        shutil.move(flat / "images" / p, flat / p)
    os.rmdir(flat / "images")
    with pytest.raises(recipe1m.Recipe1MLayoutError, match="found partition folders"):
        recipe1m.Recipe1MReader(flat)
    # ... which images_dir fixes.
    assert len(list(recipe1m.Recipe1MReader(flat, images_dir=flat))) > 0
    # A partition whose images were never extracted.
    shutil.rmtree(flat / "val")
    with pytest.raises(recipe1m.Recipe1MLayoutError, match="partition 'val'"):
        recipe1m.Recipe1MReader(flat, images_dir=flat)
    with pytest.raises(recipe1m.Recipe1MLayoutError, match="does not exist"):
        recipe1m.Recipe1MReader(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown partition"):
        recipe1m.Recipe1MReader(fixture.root, partitions=("dev",))


def test_malformed_layer1_names_file(fixture, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(fixture.root, root)
    text = (root / recipe1m.LAYER1).read_text()
    (root / recipe1m.LAYER1).write_text(text[: len(text) // 2])
    with pytest.raises(recipe1m.Recipe1MFormatError, match="layer1.json"):
        list(recipe1m.Recipe1MReader(root))


# --------------------------------------------------------------------------- fixture


def _text_scores(ingredients):
    """Per planted factor, what the fixture's text should carry: lexicon shares."""
    share = {name: np.mean([x in lex for x in ingredients]) for name, lex in (
        ("green", GREEN), ("liquid", LIQUID), ("savoury", SAVOURY), ("sweet", SWEET))}  # fmt: skip
    return [share["green"], share["liquid"], share["savoury"] - share["sweet"]]


def _image_scores(paths):
    """Per planted factor, an image statistic: background green-minus-red (greenness), the
    plate centre's blue over its red (wateriness), and minus its red level (savoriness)."""
    im = np.asarray(Image.open(paths[0]), np.float64)
    h, w, _ = im.shape
    border = np.concatenate([im[:2].reshape(-1, 3), im[-2:].reshape(-1, 3)])
    centre = im[h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3].reshape(-1, 3).mean(0)
    return [np.mean(border[:, 1] - border[:, 0]), centre[2] / centre[0], -centre[0]]


def _truth(info, recs):
    return np.array([[info.factors[f][r["id"]] for f in PLANTED_FACTORS] for r in recs])


def test_fixture_plants_three_factors_in_both_modalities(fixture):
    recs = list(recipe1m.Recipe1MReader(fixture.root, check_images="decode"))
    truth = _truth(fixture, recs)
    text = np.array([_text_scores(r["ingredients"]) for r in recs])
    image = np.array([_image_scores(r["image_paths"]) for r in recs])
    for j, name in enumerate(PLANTED_FACTORS):
        assert np.corrcoef(truth[:, j], text[:, j])[0, 1] > 0.6, name
        assert np.corrcoef(truth[:, j], image[:, j])[0, 1] > 0.9, name
        # ... and each modality's statistic is blind to the other two factors.
        for k in set(range(3)) - {j}:
            assert abs(np.corrcoef(truth[:, k], image[:, j])[0, 1]) < 0.4, (name, k)
    assert fixture.greenness == fixture.factors["greenness"]
    # The dish of the title follows wateriness and savoriness.
    for r in recs:
        w, s = fixture.wateriness[r["id"]], fixture.savoriness[r["id"]]
        watery = fixture.dish[r["id"]] in ("soup", "stew", "smoothie", "milkshake")
        savoury = fixture.dish[r["id"]] in ("soup", "stew", "stir fry", "salad")
        assert (watery, savoury) == (w > 0.5, s > 0.5)


def test_fixture_without_planted_factor_decouples_the_image(tmp_path):
    info = make_recipe1m_fixture(tmp_path, n=40, seed=1, planted_factor=False, defects=False)
    recs = list(recipe1m.Recipe1MReader(tmp_path))
    assert [r["id"] for r in recs] == info.ids
    truth = _truth(info, recs)
    image = np.array([_image_scores(r["image_paths"]) for r in recs])
    for j in range(3):
        assert abs(np.corrcoef(truth[:, j], image[:, j])[0, 1]) < 0.4, PLANTED_FACTORS[j]


def test_fixture_is_deterministic(tmp_path):
    a = make_recipe1m_fixture(tmp_path / "a", n=12, seed=3)
    b = make_recipe1m_fixture(tmp_path / "b", n=12, seed=3)
    assert a.ids == b.ids and a.factors == b.factors
    for name in (recipe1m.LAYER1, recipe1m.LAYER2, recipe1m.DET_INGRS):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    with pytest.raises(ValueError, match="at least 12"):
        make_recipe1m_fixture(tmp_path / "c", n=5)
