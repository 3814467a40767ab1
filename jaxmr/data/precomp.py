"""Readers for the SCAN/NCR precomputed-feature layout (Flickr30K, MS-COCO, CC152K).

Layout (``root`` is the published ``data_path``)::

    {root}/{name}_precomp/{split}_ims.npy    [N_img, 36, 2048] float32 region features
    {root}/{name}_precomp/{split}_caps.txt   one caption per line, 5 per image, consecutive
    {root}/{name}_precomp/{split}_caps.tsv   CC152K instead: "image_id<TAB>caption", 1 per image
    {root}/vocab/{name}_precomp_vocab.json   vocabulary (see jaxmr.data.vocab)

Splits are ``train``, ``dev``, ``test``, and for COCO ``testall`` (the 5K test images; the
1K protocol is its 5 folds). Caption ``k`` belongs to image ``k // captions_per_image``.

The image array is opened with ``np.load(mmap_mode="r")``: COCO's train array is ~33 GB and
is never read whole. Captions of one image share its feature rows by index (``cap2img``);
:func:`gather_rows` reads a batch of rows with ``os.pread`` so that a training epoch does not
leave the whole file mapped into the process's resident memory.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from jaxmr.data.vocab import END, Vocab, load_vocab

__all__ = ["PrecompSplit", "default_vocab_path", "gather_rows", "load_precomp", "read_captions"]


@dataclass
class PrecompSplit:
    """One split of a precomputed-feature dataset.

    Attributes:
        images: ``[N_img, R, F]`` float32 region features (``np.memmap`` when read from
            ``.npy``; never copied).
        captions: ``N_caps`` raw captions.
        tokens: ``[N_caps, max_len]`` int32 ids, ``<start> ... <end>``, 0-padded.
        lengths: ``[N_caps]`` int32 number of ids incl. ``<start>``/``<end>``.
        cap2img: ``[N_caps]`` int32 clean pairing ``k // captions_per_image``.
        captions_per_image: 5 (F30K, COCO) or 1 (CC152K).
        name: dataset name without ``_precomp`` (``"f30k"``).
        split: split name.
        directory: the ``{name}_precomp`` folder.
        image_ids: CC152K's image ids from the ``.tsv`` (``None`` for ``.txt`` captions).
    """

    images: np.ndarray
    captions: list[str]
    tokens: np.ndarray
    lengths: np.ndarray
    cap2img: np.ndarray
    captions_per_image: int
    name: str
    split: str
    directory: str
    image_ids: list[str] | None = None

    @property
    def n_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_captions(self) -> int:
        return len(self.captions)


def _strip_name(name: str) -> str:
    return name[: -len("_precomp")] if name.endswith("_precomp") else name


def default_vocab_path(root: str | os.PathLike, name: str) -> str:
    """``{root}/vocab/{name}_precomp_vocab.json``."""
    return os.path.join(os.fspath(root), "vocab", f"{_strip_name(name)}_precomp_vocab.json")


def read_captions(directory: str, split: str) -> tuple[list[str], list[str] | None, str]:
    """Captions of a split: ``{split}_caps.txt`` or CC152K's ``{split}_caps.tsv``.

    The ``.tsv`` is read as the published code reads it (``csv.reader`` with a tab
    delimiter, column 0 the image id, column 1 the caption, stripped).

    Returns:
        ``(captions, image_ids or None, path read)``.
    """
    txt = os.path.join(directory, f"{split}_caps.txt")
    tsv = os.path.join(directory, f"{split}_caps.tsv")
    if os.path.isfile(txt):
        with open(txt, encoding="utf-8") as f:
            return [line.strip() for line in f], None, txt
    if os.path.isfile(tsv):
        captions, ids = [], []
        with open(tsv, encoding="utf-8", newline="") as f:
            for lineno, row in enumerate(csv.reader(f, delimiter="\t"), 1):
                if len(row) < 2:
                    raise ValueError(
                        f"{tsv}:{lineno}: expected 'image_id<TAB>caption', got {row!r}"
                    )
                ids.append(row[0])
                captions.append(row[1].strip())
        return captions, ids, tsv
    raise FileNotFoundError(f"{directory}: no captions for split {split!r} ({txt} or {tsv})")


def _resolve_vocab(root: str, name: str, vocab_path: str | os.PathLike | None) -> Vocab:
    if vocab_path is None:
        path = default_vocab_path(root, name)
    else:
        path = os.fspath(vocab_path)
        if os.path.isdir(path):  # the published --vocab_path is a folder
            path = os.path.join(path, f"{name}_precomp_vocab.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"vocab file not found: {path} (pass vocab= or vocab_path=, or build one with "
            "jaxmr.data.vocab.build_vocab over the train and dev captions)"
        )
    return load_vocab(path)


def _encode_all(vocab: Vocab, captions: list[str], max_len: int | None):
    ids = [vocab.encode(c) for c in captions]
    lengths = np.array([len(x) for x in ids], np.int32)
    width = int(lengths.max(initial=2)) if max_len is None else int(max_len)
    if width < 2:
        raise ValueError(f"max_len={max_len} must be at least 2 (<start> and <end>)")
    tokens = np.zeros((len(ids), width), np.int32)
    for i, x in enumerate(ids):
        if len(x) > width:  # truncated captions keep their <end>
            x = [*x[: width - 1], END]
        tokens[i, : len(x)] = x
    return tokens, np.minimum(lengths, width).astype(np.int32)


def load_precomp(
    root: str | os.PathLike,
    name: str,
    split: str,
    *,
    vocab: Vocab | None = None,
    vocab_path: str | os.PathLike | None = None,
    max_len: int | None = None,
    dev_images: int | None = 1000,
) -> PrecompSplit:
    """Reads ``{root}/{name}_precomp/{split}_*`` with the images memory-mapped.

    Args:
        root: the folder holding ``{name}_precomp/`` (and usually ``vocab/``).
        name: ``"f30k"``, ``"coco"``, ``"cc152k"`` (a ``_precomp`` suffix is accepted).
        split: ``"train"``, ``"dev"``, ``"test"``, ``"testall"``, ...
        vocab: a vocabulary; default: ``vocab_path``.
        vocab_path: a vocab JSON, or a folder holding ``{name}_precomp_vocab.json`` (the
            published ``--vocab_path``); default ``{root}/vocab/{name}_precomp_vocab.json``.
        max_len: width of ``tokens``; default the longest caption. Longer captions are cut
            to ``max_len`` ids ending in ``<end>``.
        dev_images: NCR's dev rule: the ``dev`` split keeps its first ``dev_images`` images
            and their captions (``None`` keeps all).

    Returns:
        :class:`PrecompSplit`.

    Raises:
        FileNotFoundError: the folder, split or vocab is missing (the message names the
            folder and the files expected there).
        ValueError: the caption count is not a multiple of the image count, the image
            array is not 3-D, or the vocab lacks the special ids.
    """
    root = os.fspath(root)
    name = _strip_name(name)
    directory = os.path.join(root, f"{name}_precomp")
    expected = f"{split}_ims.npy and {split}_caps.txt (CC152K: {split}_caps.tsv)"
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"data folder not found: {directory} (expected {expected})")
    ims_path = os.path.join(directory, f"{split}_ims.npy")
    if not os.path.isfile(ims_path):
        present = sorted(f for f in os.listdir(directory) if f.endswith((".npy", ".txt", ".tsv")))
        raise FileNotFoundError(
            f"{directory}: split {split!r} not found (expected {expected}; present: {present})"
        )
    captions, image_ids, caps_path = read_captions(directory, split)
    try:
        images = np.load(ims_path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{ims_path}: not a readable .npy array ({e})") from e
    if images.ndim != 3:
        raise ValueError(
            f"{ims_path}: expected [N_img, regions, features] (3-D), got shape {images.shape}"
        )
    n_img, n_caps = images.shape[0], len(captions)
    if n_img == 0 or n_caps == 0 or n_caps % n_img:
        raise ValueError(
            f"{caps_path}: {n_caps} captions is not a positive multiple of the "
            f"{n_img} images in {ims_path}"
        )
    per_image = n_caps // n_img
    if split == "dev" and dev_images is not None and n_img > dev_images:
        images = images[:dev_images]  # a memmap slice: still not read
        captions = captions[: dev_images * per_image]
        image_ids = image_ids[: dev_images * per_image] if image_ids is not None else None
    if vocab is None:
        vocab = _resolve_vocab(root, name, vocab_path)
    tokens, lengths = _encode_all(vocab, captions, max_len)
    return PrecompSplit(
        images=images,
        captions=captions,
        tokens=tokens,
        lengths=lengths,
        cap2img=(np.arange(len(captions)) // per_image).astype(np.int32),
        captions_per_image=per_image,
        name=name,
        split=split,
        directory=directory,
        image_ids=image_ids,
    )


def gather_rows(array: np.ndarray, rows, *, out: np.ndarray | None = None) -> np.ndarray:
    """``array[rows]`` for a batch, reading a memory-mapped ``.npy`` with ``os.pread``.

    Indexing an ``np.memmap`` faults its pages into the process; over an epoch of a 33 GB
    array the resident set grows towards the file size (the kernel may reclaim, but RSS and
    cgroup accounting see it). ``pread`` copies only the requested rows into ``out`` and
    maps nothing. Runs of consecutive rows are read in one call. Arrays that are not
    C-contiguous memmaps of a file are indexed normally.

    Args:
        array: ``[N, ...]`` array or ``np.memmap``.
        rows: ``[B]`` integer row indices (any order, repeats allowed).
        out: optional ``[B, ...]`` buffer of ``array.dtype``.

    Returns:
        ``[B, ...]`` array equal to ``np.asarray(array)[rows]``.
    """
    rows = np.asarray(rows)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"rows must be a 1-D integer array, got {rows.dtype} {rows.shape}")
    n = array.shape[0]
    if rows.size and (rows.min() < -n or rows.max() >= n):
        raise IndexError(f"rows out of range for an array of {n} rows")
    rows = np.where(rows < 0, rows + n, rows)
    shape = (len(rows), *array.shape[1:])
    if out is None:
        out = np.empty(shape, array.dtype)
    elif out.shape != shape or out.dtype != array.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous {shape} {array.dtype}, got {out.shape}")
    filename = getattr(array, "filename", None)
    base = getattr(array, "offset", None)
    if (
        not isinstance(array, np.memmap)
        or filename is None
        or base is None
        or not array.flags.c_contiguous
        or not hasattr(os, "pread")
    ):
        np.take(array, rows, axis=0, out=out)
        return out
    # A slice of a memmap (e.g. the dev rule) keeps .offset of the file start of row 0.
    row_bytes = array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    start_byte = base + _memmap_row0_delta(array)
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    flat = out.reshape(len(rows), -1).view(np.uint8).reshape(len(rows), row_bytes)
    fd = os.open(filename, os.O_RDONLY)
    try:
        if hasattr(os, "posix_fadvise"):
            # Random rows: read-ahead past each row is wasted work (2.5x slower measured).
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        i = 0
        while i < len(srt):
            j = i + 1
            while j < len(srt) and srt[j] == srt[j - 1] + 1 and order[j] == order[j - 1] + 1:
                j += 1  # consecutive rows landing in consecutive out slots: one read
            want = (j - i) * row_bytes
            buf = flat[order[i] : order[i] + (j - i)]
            got = os.preadv(fd, [buf], start_byte + int(srt[i]) * row_bytes)
            if got != want:
                raise OSError(f"{filename}: short read ({got} of {want} bytes)")
            i = j
    finally:
        os.close(fd)
    return out


def _memmap_row0_delta(array: np.memmap) -> int:
    """Byte distance from the memmap's ``offset`` to its row 0 (non-zero after slicing)."""
    root = array
    while isinstance(getattr(root, "base", None), np.memmap):
        root = root.base
    if root is array:
        return 0
    a0 = array.__array_interface__["data"][0]
    r0 = root.__array_interface__["data"][0]
    return a0 - r0
