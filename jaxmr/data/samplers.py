"""Task samplers over index arrays (the trainer's `Sampler` contract).

`IndexedPairSampler` draws training *pairs* (e.g. captions) and gathers the rows they point
to from shared arrays (e.g. the image features, indexed by each caption's image), so five
captions of one image share its features by index, never by copy, and a memory-mapped feature
array is read one batch's rows at a time. Drawing can be restricted to a subset of pairs (a
clean or noisy split), and per-example values (clean probabilities, ...) travel with batches.

Every batch is a pure function of (seed, step, the per-example values and subset), and those
are saved with checkpoints, so a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxmr.data.precomp import gather_rows

SUBSET_KEY = "_subset"


class IndexedPairSampler:
    """Batches of pairs; `gathered[name] = (source, index_name)` adds
    `source[pairs[index_name][batch]]` to each batch as `name` (read with
    `jaxmr.data.precomp.gather_rows`: a memory-mapped `.npy` is read row by row with `pread`).

    Epoch e uses a permutation drawn from `default_rng([seed, e])`; the epoch length is fixed
    at `num_pairs // batch_size` steps (so step -> epoch never changes). With a subset set, the
    epoch's sequence is the subset permuted, then permuted again, until the epoch is full.
    With several processes each takes its contiguous slice of the global batch.

    Args:
      pairs: equal-length per-pair arrays (token ids, lengths, image index, truth...).
      gathered: {name: (source array [M, ...] (np.memmap is fine), name of an index array
        in `pairs`)}.
      batch_size, seed, process_index, process_count: as `ArrayLoader`.
    """

    def __init__(
        self,
        pairs: Mapping[str, np.ndarray],
        gathered: Mapping[str, tuple[np.ndarray, str]] | None = None,
        *,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        lengths = {k: len(v) for k, v in pairs.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"pair arrays have different lengths: {lengths}")
        self.num_examples = next(iter(lengths.values()))
        if batch_size > self.num_examples:
            raise ValueError(
                f"batch_size {batch_size} exceeds the number of pairs {self.num_examples}"
            )
        if batch_size % process_count:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the process count {process_count}"
            )
        self.pairs = dict(pairs)
        self.gathered = dict(gathered or {})
        for name, (source, index_name) in self.gathered.items():
            if index_name not in self.pairs:
                raise ValueError(f"gathered {name!r}: no pair array named {index_name!r}")
            idx = self.pairs[index_name]
            if len(idx) and (idx.min() < 0 or idx.max() >= len(source)):
                raise ValueError(
                    f"gathered {name!r}: indices in {index_name!r} out of range for "
                    f"{len(source)} rows"
                )
        self.batch_size = batch_size
        self.seed = seed
        self.process_index = process_index
        self.process_count = process_count
        self.steps_per_epoch = self.num_examples // batch_size
        self._extra: dict[str, np.ndarray] = {}
        self._order_cache: tuple[tuple, np.ndarray] | None = None

    # -- subset and per-example values (checkpointed as `per_example`) --------------------
    def set_subset(self, mask: np.ndarray | None) -> None:
        """Draw pairs only where `mask` is True (None: all pairs). Takes effect for orders
        computed afterwards; set it from an epoch hook, at an epoch start."""
        if mask is None:
            self._extra.pop(SUBSET_KEY, None)
        else:
            mask = np.asarray(mask, bool)
            if mask.shape != (self.num_examples,) or not mask.any():
                raise ValueError(f"subset mask must be a non-empty bool [{self.num_examples}]")
            self._extra[SUBSET_KEY] = mask
        self._order_cache = None

    @property
    def per_example(self) -> dict[str, np.ndarray]:
        return dict(self._extra)

    def set_per_example(self, name: str, values: np.ndarray) -> None:
        values = np.asarray(values)
        if len(values) != self.num_examples:
            raise ValueError(
                f"per-example values {name!r} have length {len(values)}, "
                f"expected {self.num_examples}"
            )
        self._extra[name] = values
        if name == SUBSET_KEY:
            self._order_cache = None

    # -- batches --------------------------------------------------------------------------
    def order(self, epoch: int) -> np.ndarray:
        subset = self._extra.get(SUBSET_KEY)
        cache_key = (epoch, None if subset is None else subset.tobytes())
        if self._order_cache is not None and self._order_cache[0] == cache_key:
            return self._order_cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        need = self.steps_per_epoch * self.batch_size
        if subset is None:
            order = rng.permutation(self.num_examples)
        else:
            domain = np.flatnonzero(subset)
            reps = -(-need // len(domain))
            order = np.concatenate([rng.permutation(domain) for _ in range(reps)])
        self._order_cache = (cache_key, order[:need])
        return self._order_cache[1]

    def indices(self, step: int) -> np.ndarray:
        """Global pair indices of step `step`'s batch, this process's slice."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        idx = self.order(epoch)[pos * self.batch_size : (pos + 1) * self.batch_size]
        local = self.batch_size // self.process_count
        return idx[self.process_index * local : (self.process_index + 1) * local]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        idx = self.indices(step)
        out = {k: v[idx] for k, v in self.pairs.items()}
        for name, (source, index_name) in self.gathered.items():
            rows = self.pairs[index_name][idx]
            out[name] = gather_rows(source, rows)
        out.update({k: v[idx] for k, v in self._extra.items() if k != SUBSET_KEY})
        out["index"] = idx.astype(np.int32)
        return out


class StreamPairSampler(IndexedPairSampler):
    """Several independent streams of pairs per step, each over the pairs a per-example value
    selects: NCR's labeled and unlabeled loaders, one pair of them per network.

    `streams = {stream: (key, wanted)}` or `(key, wanted, one_pass)`: every step, stream
    `stream` brings `batch_size` pairs drawn from the pairs whose per-example value `key`
    satisfies `(value > 0.5) == wanted` (all pairs while `key` is unset or selects none: before
    NCR's first split). A batch holds, for every stream, each pair array, gathered array and
    per-example value of its rows as `"{stream}/{name}"`, `"{stream}/index"` and
    `"{stream}/active"` (float32 per row, all 1 or all 0; see `one_pass`).

    Epoch e of the k-th stream: permutations of its pairs drawn from `default_rng([seed, e,
    k])`, concatenated until the epoch (`num_pairs // batch_size` steps, fixed) is full, so a
    stream over a small split repeats pairs within an epoch and two streams over the same pairs
    draw them in different orders. A `one_pass` stream's epoch is one pass over its pairs
    (a PyTorch loader's epoch): its first ceil(n_selected / batch_size) steps (at most the
    epoch) are `active` = 1, the rest 0 (their rows continue the order and are meant to be
    ignored); `stream_steps` gives that count. Batches stay a pure function of (seed, step,
    per-example values), which checkpoints save: resume is bit-identical.
    """

    def __init__(self, pairs, gathered=None, *, streams, batch_size, seed, **kw):
        super().__init__(pairs, gathered, batch_size=batch_size, seed=seed, **kw)
        if not streams:
            raise ValueError("StreamPairSampler needs at least one stream")
        self.streams: dict[str, tuple[str, bool]] = {}
        self.one_pass: dict[str, bool] = {}
        for name, spec in streams.items():
            if len(spec) not in (2, 3):
                raise ValueError(f"stream {name!r}: expected (key, wanted[, one_pass]), got {spec}")
            self.streams[name] = (str(spec[0]), bool(spec[1]))
            self.one_pass[name] = bool(spec[2]) if len(spec) == 3 else False
        self._stream_cache: dict[str, tuple[tuple, np.ndarray]] = {}

    def _domain(self, stream: str) -> np.ndarray | None:
        key, wanted = self.streams[stream]
        values = self._extra.get(key)
        domain = None
        if values is not None:
            domain = np.flatnonzero((np.asarray(values) > 0.5) == wanted)
            if not len(domain):
                domain = None
        return domain

    def stream_steps(self, stream: str) -> int:
        """Active steps of `stream` per epoch: the whole epoch, or for a `one_pass` stream
        ceil(n_selected / batch_size), at most the epoch."""
        if not self.one_pass[stream]:
            return self.steps_per_epoch
        domain = self._domain(stream)
        n = self.num_examples if domain is None else len(domain)
        return min(self.steps_per_epoch, -(-n // self.batch_size))

    def stream_order(self, stream: str, epoch: int) -> np.ndarray:
        domain = self._domain(stream)
        cache_key = (epoch, None if domain is None else domain.tobytes())
        hit = self._stream_cache.get(stream)
        if hit is not None and hit[0] == cache_key:
            return hit[1]
        k = list(self.streams).index(stream)
        rng = np.random.default_rng([self.seed, epoch, k])
        need = self.steps_per_epoch * self.batch_size
        domain = np.arange(self.num_examples) if domain is None else domain
        reps = -(-need // len(domain))
        order = np.concatenate([rng.permutation(domain) for _ in range(reps)])[:need]
        self._stream_cache[stream] = (cache_key, order)
        return order

    def stream_indices(self, stream: str, step: int) -> np.ndarray:
        epoch, pos = divmod(step, self.steps_per_epoch)
        idx = self.stream_order(stream, epoch)[pos * self.batch_size : (pos + 1) * self.batch_size]
        local = self.batch_size // self.process_count
        return idx[self.process_index * local : (self.process_index + 1) * local]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        out = {}
        for stream in self.streams:
            idx = self.stream_indices(stream, step)
            rows = {k: v[idx] for k, v in self.pairs.items()}
            for name, (source, index_name) in self.gathered.items():
                rows[name] = gather_rows(source, self.pairs[index_name][idx])
            rows.update({k: v[idx] for k, v in self._extra.items() if k != SUBSET_KEY})
            rows["index"] = idx.astype(np.int32)
            on = step % self.steps_per_epoch < self.stream_steps(stream)
            rows["active"] = np.full(len(idx), float(on), np.float32)
            out.update({f"{stream}/{k}": v for k, v in rows.items()})
        return out
