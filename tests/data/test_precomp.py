"""The SCAN/NCR precomputed layout: a tiny fixture written in the published format."""

import json
import os
import sys

import numpy as np
import pytest

from jaxmr.data import precomp
from jaxmr.data.precomp import gather_rows, load_precomp
from jaxmr.data.vocab import Vocab, build_vocab, load_vocab, save_vocab

CAPS = [
    "A dog runs on grass.",
    "A brown dog is running.",
    "The dog's ball is red.",
    "A dog plays outside.",
    "A dog and a ball.",
    "A cat sits on a mat.",
    "The cat is sleeping.",
    "A black cat. It sleeps.",
    "A cat on the mat.",
    "A sleepy cat.",
    "Two men ride bikes.",
    "Men riding bicycles.",
    "Two cyclists on a road.",
    "Bikes and men.",
    "Men ride.",
]


def _write_layout(root, name="f30k", n_img=3, regions=4, feat=6, split="train", caps=CAPS):
    d = root / f"{name}_precomp"
    d.mkdir(parents=True, exist_ok=True)
    ims = np.arange(n_img * regions * feat, dtype=np.float32).reshape(n_img, regions, feat)
    np.save(d / f"{split}_ims.npy", ims)
    (d / f"{split}_caps.txt").write_text("\n".join(caps) + "\n")
    return ims


def _vocab(root, name="f30k"):
    v = build_vocab(CAPS, threshold=1)
    save_vocab(v, root / "vocab" / f"{name}_precomp_vocab.json")
    return v


def test_vocab_format_round_trip(tmp_path):
    v = build_vocab(["a dog . a dog", "a cat"], threshold=2)
    # special ids first, then words in order of first occurrence with count >= 2
    assert v.idx2word == {0: "<pad>", 1: "<start>", 2: "<end>", 3: "<unk>", 4: "a", 5: "dog"}
    path = tmp_path / "v.json"
    save_vocab(v, path)
    data = json.loads(path.read_text())
    assert set(data) == {"word2idx", "idx2word", "idx"} and data["idx"] == 6
    assert data["idx2word"]["4"] == "a"  # JSON keys are strings, as in the published files
    back = load_vocab(path)
    assert back == v
    assert back.encode("A cat, a DOG!") == [1, 4, 3, 3, 4, 5, 3, 2]


def test_vocab_without_special_ids_is_an_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"word2idx": {"<start>": 0, "a": 1}, "idx2word": {"0": "<start>", "1": "a"}})
    )
    with pytest.raises(ValueError, match=r"bad\.json.*'<pad>' to id 0"):
        load_vocab(path)
    with pytest.raises(ValueError, match="ids 0-3"):
        Vocab(word2idx={"a": 0}, idx2word={0: "a"})


def test_load_precomp_reads_the_published_layout(tmp_path):
    ims = _write_layout(tmp_path)
    vocab = _vocab(tmp_path)
    s = load_precomp(tmp_path, "f30k", "train")
    assert isinstance(s.images, np.memmap) and s.images.shape == (3, 4, 6)
    np.testing.assert_array_equal(s.images, ims)
    assert s.captions_per_image == 5 and s.n_images == 3 and s.n_captions == 15
    np.testing.assert_array_equal(s.cap2img, np.repeat([0, 1, 2], 5))
    assert s.tokens.dtype == np.int32 and s.lengths.dtype == np.int32
    for k, cap in enumerate(CAPS):
        ids = vocab.encode(cap)
        assert s.lengths[k] == len(ids)
        np.testing.assert_array_equal(s.tokens[k, : len(ids)], ids)
        assert np.all(s.tokens[k, len(ids) :] == 0)
    assert s.tokens.shape[1] == max(len(vocab.encode(c)) for c in CAPS)
    # "A black cat. It sleeps." -> two sentence-final periods
    assert [vocab.idx2word[i] for i in s.tokens[7, : s.lengths[7]]] == [
        "<start>", "a", "black", "cat", ".", "it", "sleeps", ".", "<end>",
    ]  # fmt: skip
    assert s.directory == os.path.join(os.fspath(tmp_path), "f30k_precomp")
    # the name may carry the _precomp suffix; vocab may be passed as a folder or a file
    s2 = load_precomp(tmp_path, "f30k_precomp", "train", vocab_path=tmp_path / "vocab")
    np.testing.assert_array_equal(s2.tokens, s.tokens)


def test_max_len_truncates_keeping_end(tmp_path):
    _write_layout(tmp_path)
    _vocab(tmp_path)
    s = load_precomp(tmp_path, "f30k", "train", max_len=4)
    assert s.tokens.shape == (15, 4) and np.all(s.lengths <= 4)
    assert s.tokens[0, 0] == 1 and s.tokens[0, 3] == 2


def test_cc152k_tsv_one_caption_per_image(tmp_path):
    d = tmp_path / "cc152k_precomp"
    d.mkdir()
    np.save(d / "test_ims.npy", np.zeros((2, 36, 8), np.float32))
    (d / "test_caps.tsv").write_text("11_22\ta dog runs .\n33_44\tthe cat , asleep .\n")
    s = load_precomp(tmp_path, "cc152k", "test", vocab=build_vocab(["a dog runs ."], threshold=1))
    assert s.captions == ["a dog runs .", "the cat , asleep ."]
    assert s.image_ids == ["11_22", "33_44"] and s.captions_per_image == 1
    np.testing.assert_array_equal(s.cap2img, [0, 1])


def test_dev_rule_keeps_first_images_without_reading(tmp_path):
    caps = [f"caption {i}" for i in range(30)]
    ims = _write_layout(tmp_path, name="coco", n_img=6, split="dev", caps=caps)
    v = build_vocab(caps, threshold=1)
    s = load_precomp(tmp_path, "coco", "dev", vocab=v, dev_images=2)
    assert isinstance(s.images, np.memmap) and s.images.shape == (2, 4, 6)
    assert s.captions == caps[:10]
    np.testing.assert_array_equal(gather_rows(s.images, [1, 0]), ims[[1, 0]])
    full = load_precomp(tmp_path, "coco", "dev", vocab=v, dev_images=None)
    assert full.n_images == 6
    test = load_precomp(tmp_path, "coco", "dev", vocab=v, dev_images=100)
    assert test.n_images == 6


def test_errors_name_the_file(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"f30k_precomp.*train_ims\.npy and train_caps\.txt"
    ):
        load_precomp(tmp_path, "f30k", "train")
    _write_layout(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"split 'test' not found.*present"):
        load_precomp(tmp_path, "f30k", "test")
    with pytest.raises(
        FileNotFoundError, match=r"vocab file not found: .*f30k_precomp_vocab\.json"
    ):
        load_precomp(tmp_path, "f30k", "train")
    v = build_vocab(CAPS, threshold=1)
    d = tmp_path / "f30k_precomp"
    (d / "bad_caps.txt").write_text("\n".join(CAPS[:14]) + "\n")
    np.save(d / "bad_ims.npy", np.zeros((3, 4, 6), np.float32))
    with pytest.raises(
        ValueError, match=r"bad_caps\.txt: 14 captions is not a positive multiple of the 3"
    ):
        load_precomp(tmp_path, "f30k", "bad", vocab=v)
    np.save(d / "flat_ims.npy", np.zeros((3, 24), np.float32))
    (d / "flat_caps.txt").write_text("\n".join(CAPS) + "\n")
    with pytest.raises(ValueError, match=r"flat_ims\.npy: expected .*3-D.*\(3, 24\)"):
        load_precomp(tmp_path, "f30k", "flat", vocab=v)


def _mapping_rss_kb(path):
    """Resident KiB of this process's mappings of ``path`` (Linux /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and ":" in head[3]:  # a mapping header
                inside = line.rstrip().endswith(os.fspath(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_images_stay_memory_mapped_and_a_batch_touches_only_its_rows(tmp_path, monkeypatch):
    # 256 rows of 64 KiB (16 MiB): large enough that reading it whole is unmistakable.
    n, regions, feat = 256, 16, 1024
    d = tmp_path / "f30k_precomp"
    d.mkdir()
    path = d / "train_ims.npy"
    ims = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, regions, feat))
    ims[:] = np.arange(n, dtype=np.float32)[:, None, None]
    ims.flush()
    del ims
    (d / "train_caps.txt").write_text("\n".join(f"cap {i}" for i in range(n)) + "\n")
    s = load_precomp(tmp_path, "f30k", "train", vocab=build_vocab(["cap"], threshold=1))
    assert isinstance(s.images, np.memmap) and s.images.filename == os.fspath(path)
    assert _mapping_rss_kb(path) <= 8  # opening read nothing beyond the header page

    # gather_rows reads exactly the requested rows with pread: record the byte ranges.
    reads = []
    real = os.preadv

    def spy(fd, buffers, offset):
        got = real(fd, buffers, offset)
        reads.append((offset, got))
        return got

    monkeypatch.setattr(precomp.os, "preadv", spy)
    rows = np.array([40, 3, 4, 3, 63])
    batch = gather_rows(s.images, rows)
    np.testing.assert_array_equal(batch[:, 0, 0], rows.astype(np.float32))
    assert not np.shares_memory(batch, s.images)
    row_bytes = regions * feat * 4
    header = s.images.offset
    spans = sorted((o - header) // row_bytes for o, _ in reads)
    assert sum(g for _, g in reads) == len(rows) * row_bytes
    assert set(spans) == {3, 4, 40, 63} and all((o - header) % row_bytes == 0 for o, _ in reads)
    assert _mapping_rss_kb(path) <= 8  # pread mapped nothing in

    # Plain memmap indexing faults in the pages of the rows it reads (plus the kernel's
    # fault-around / large-folio neighbourhood, at most 2 MiB each), not the array.
    np.asarray(s.images[[10, 200]])
    rss = _mapping_rss_kb(path)
    assert 2 * row_bytes // 1024 <= rss <= 4 * 1024, rss


def test_gather_rows_of_plain_arrays_and_slices(tmp_path):
    a = np.random.default_rng(0).normal(size=(10, 3, 2)).astype(np.float32)
    np.testing.assert_array_equal(gather_rows(a, [9, 0, -1]), a[[9, 0, -1]])
    path = tmp_path / "a.npy"
    np.save(path, a)
    m = np.load(path, mmap_mode="r")
    np.testing.assert_array_equal(gather_rows(m[4:], [0, 1, 2, 5]), a[4:][[0, 1, 2, 5]])
    np.testing.assert_array_equal(gather_rows(m, np.arange(10)), a)
    with pytest.raises(IndexError):
        gather_rows(m, [10])


def test_coco_testall_feeds_the_1k_and_5k_protocols(tmp_path):
    from jaxmr.metrics import retrieval_metrics_multi_caption

    caps = [f"caption {i}" for i in range(50)]
    _write_layout(tmp_path, name="coco", n_img=10, split="testall", caps=caps)
    s = load_precomp(tmp_path, "coco", "testall", vocab=build_vocab(caps, threshold=1))
    assert s.n_images == 10 and s.captions_per_image == 5
    img = gather_rows(s.images, np.arange(s.n_images)).reshape(10, -1)
    cap = img[s.cap2img]  # each caption embedded at its image: perfect retrieval
    for folds in (1, 5):
        got = retrieval_metrics_multi_caption(img, cap, n_folds=folds)
        assert got["rsum"] == 600.0 and got["i2t/medR"] == 1.0
