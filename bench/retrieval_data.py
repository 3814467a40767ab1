"""Reading batches from a COCO-shaped memory-mapped region-feature array.

Creates ``{dir}/coco_precomp/train_ims.npy`` as a *sparse* file of COCO's real train shape
(113,287 x 36 x 2,048 float32, 33.4 GB): a ``.npy`` header, then ``truncate`` to the full
size, so nothing is written and the disk holds only the header. It is opened the way
``jaxmr.data.load_precomp`` opens it (``np.load(mmap_mode="r")``) and read at training batch
rate (128 random rows per batch) two ways, each in a fresh process:

* ``memmap``: ``np.asarray(images[rows])`` (fancy indexing of the memmap);
* ``pread``: ``jaxmr.data.gather_rows(images, rows)`` (``os.preadv`` into a buffer).

* ``memmap+dontneed``: the same, then ``madvise(MADV_DONTNEED)`` on the rows read (through
  numpy's private ``memmap._mmap``; shown for comparison, not used by the library).

Printed per way: ms per batch (median and IQR over batches), the resident set (VmRSS) before
opening, after opening, and after the batches, and its peak (VmHWM). The file holds holes, so the
reads cost page-cache and copy work, not disk: timings are a floor, the RSS numbers are what
this measures.

    python bench/retrieval_data.py [--batches 40] [--dir /tmp/jaxmr_bench]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import subprocess
import sys
import time

import numpy as np

SHAPE = (113_287, 36, 2_048)  # COCO train (SCAN/NCR precomp), float32
BATCH = 128


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def make_sparse_npy(path: str, shape=SHAPE, dtype=np.float32) -> None:
    """A valid ``.npy`` of ``shape`` whose data is a hole (header written, then truncate)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    header["shape"] = tuple(shape)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        offset = f.tell()
        f.truncate(offset + int(np.prod(shape)) * np.dtype(dtype).itemsize)


def _drop_rows(images: np.memmap, rows: np.ndarray) -> None:
    """Unmaps the pages of ``rows`` from this process (the page cache keeps them)."""
    mm = images._mmap  # numpy private: the mmap.mmap behind the memmap
    page = mmap.PAGESIZE
    start0 = images.offset % mmap.ALLOCATIONGRANULARITY  # where row 0 sits in the mapping
    row_bytes = images[0].nbytes
    for r in np.unique(rows):
        a = start0 + int(r) * row_bytes
        lo, hi = a - a % page, a + row_bytes
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def worker(path: str, way: str, batches: int, seed: int) -> dict:
    from jaxmr.data.precomp import gather_rows

    rss0 = _status_kb("VmRSS")
    images = np.load(path, mmap_mode="r")
    rss_open = _status_kb("VmRSS")
    rng = np.random.default_rng(seed)
    out = np.empty((BATCH, *images.shape[1:]), images.dtype)
    times = []
    for _ in range(batches):
        rows = rng.integers(0, images.shape[0], BATCH)
        t = time.perf_counter()
        if way == "memmap":
            batch = np.asarray(images[rows])
        elif way == "memmap+dontneed":
            batch = np.asarray(images[rows])
            _drop_rows(images, rows)
        else:
            batch = gather_rows(images, rows, out=out)
        times.append(time.perf_counter() - t)
        assert batch.shape == (BATCH, *images.shape[1:])
    return {
        "way": way,
        "ms_per_batch": 1e3 * float(np.median(times)),
        "ms_iqr": [1e3 * float(q) for q in np.percentile(times, [25, 75])],
        "rss_before_mb": rss0 / 1024,
        "rss_open_mb": rss_open / 1024,
        "rss_after_mb": _status_kb("VmRSS") / 1024,
        "rss_peak_mb": _status_kb("VmHWM") / 1024,
        "batch_mb": out.nbytes / 2**20,
        "batches": batches,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--dir", default="/tmp/jaxmr_bench")
    ap.add_argument("--keep", action="store_true", help="keep the sparse file")
    ap.add_argument("--worker", nargs=2, metavar=("PATH", "WAY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.batches, seed=0)))
        return
    path = os.path.join(args.dir, "coco_precomp", "train_ims.npy")
    make_sparse_npy(path)
    st = os.stat(path)
    print(
        f"{path}: shape {SHAPE} float32, {st.st_size / 1e9:.1f} GB apparent, "
        f"{st.st_blocks * 512 / 1e6:.2f} MB on disk"
    )
    rows = []
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    try:
        for way in ("pread", "memmap", "memmap+dontneed"):
            cmd = [sys.executable, __file__, "--batches", str(args.batches), "--worker", path, way]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    finally:
        if not args.keep:
            os.remove(path)
    print(f"\n{args.batches} batches of {BATCH} random rows ({rows[0]['batch_mb']:.1f} MB each)\n")
    print("| read | ms/batch median [IQR] | RSS before open | after open | after batches | peak |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['way']} | {r['ms_per_batch']:.1f} [{r['ms_iqr'][0]:.1f}-{r['ms_iqr'][1]:.1f}] | "
            f"{r['rss_before_mb']:.0f} MB | "
            f"{r['rss_open_mb']:.0f} MB | {r['rss_after_mb']:.0f} MB | {r['rss_peak_mb']:.0f} MB |"
        )
    os.makedirs(os.path.join(os.path.dirname(__file__), "out"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "out", "retrieval_data.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
