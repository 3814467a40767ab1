"""StreamPairSampler: NCR's labeled/unlabeled loaders as streams selected by per-pair values."""

import numpy as np
import pytest

from jaxmr.data.samplers import StreamPairSampler


def _sampler(**kw):
    ims = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    cap2img = np.repeat(np.arange(10), 3).astype(np.int32)  # 30 pairs
    streams = {"l": ("clean", True), "u": ("clean", False), "all": ("other", True)}
    return (
        StreamPairSampler(
            {"cap": np.arange(30), "img_index": cap2img},
            {"img": (ims, "img_index")},
            streams=streams,
            batch_size=6,
            seed=0,
            **kw,
        ),
        ims,
        cap2img,
    )


def test_streams_draw_from_their_split_and_gather_by_index():
    s, ims, cap2img = _sampler()
    clean = np.zeros(30, np.float32)
    clean[[1, 4, 7, 20]] = 1.0
    s.set_per_example("clean", clean)
    b = s.batch(2)
    assert set(b["l/index"]) <= {1, 4, 7, 20} and len(b["l/index"]) == 6  # repeats: 4 < 6
    assert not set(b["u/index"]) & {1, 4, 7, 20}
    np.testing.assert_array_equal(b["u/img"], ims[cap2img[b["u/cap"]]])
    np.testing.assert_array_equal(b["l/clean"], np.ones(6, np.float32))
    # Over an epoch the small stream cycles through all of its pairs.
    epoch = np.concatenate([s.batch(t)["l/index"] for t in range(s.steps_per_epoch)])
    assert set(epoch) == {1, 4, 7, 20}


def test_unset_or_empty_selection_draws_all_pairs_in_its_own_order():
    s, _, _ = _sampler()
    epoch = {k: np.concatenate([s.batch(t)[f"{k}/index"] for t in range(5)]) for k in ("l", "u")}
    assert sorted(epoch["l"]) == list(range(30)) and sorted(epoch["u"]) == list(range(30))
    assert not np.array_equal(epoch["l"], epoch["u"])
    s.set_per_example("clean", np.ones(30, np.float32))  # u selects nothing: all pairs
    assert sorted(np.concatenate([s.batch(t)["u/index"] for t in range(5)])) == list(range(30))


def test_batches_are_a_function_of_step_and_saved_values():
    s, _, _ = _sampler()
    s.set_per_example("clean", (np.arange(30) % 3 == 0).astype(np.float32))
    again, _, _ = _sampler()
    for k, v in s.per_example.items():  # what a checkpoint restores
        again.set_per_example(k, v)
    for t in (0, 7, 13):
        for key, v in s.batch(t).items():
            np.testing.assert_array_equal(again.batch(t)[key], v, err_msg=key)
    with pytest.raises(ValueError, match="at least one stream"):
        StreamPairSampler({"cap": np.arange(30)}, streams={}, batch_size=6, seed=0)


def test_one_pass_stream_is_active_for_one_pass_over_its_pairs():
    ims = np.zeros((10, 2), np.float32)
    streams = {"l": ("clean", True, True), "u": ("clean", False)}
    s = StreamPairSampler(
        {"cap": np.arange(30), "img_index": np.repeat(np.arange(10), 3)},
        {"img": (ims, "img_index")},
        streams=streams,
        batch_size=4,
        seed=0,
    )
    assert s.steps_per_epoch == 7
    # Before a split every pair is selected: 30 pairs -> ceil(30 / 4) = 8, capped at 7.
    assert s.stream_steps("l") == 7 and s.stream_steps("u") == 7
    clean = np.zeros(30, np.float32)
    clean[:10] = 1.0  # 10 labeled pairs: a pass is ceil(10 / 4) = 3 steps
    s.set_per_example("clean", clean)
    assert s.stream_steps("l") == 3
    for epoch in (0, 1):
        batches = [s.batch(epoch * 7 + t) for t in range(7)]
        active = [float(b["l/active"][0]) for b in batches]
        assert active == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        assert all(np.all(b["u/active"] == 1.0) for b in batches)  # cycles all epoch
        seen = np.concatenate([b["l/index"] for b in batches[:3]])
        assert set(seen) == set(range(10))  # every labeled pair once (the last batch fills up)
        assert len(set(seen[:8])) == 8
