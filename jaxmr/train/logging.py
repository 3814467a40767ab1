"""Metric writing (TensorBoard event files + metrics.jsonl) and the progress line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from tensorboardX import SummaryWriter


class MetricWriter:
    """Writes scalars to TensorBoard event files and `metrics.jsonl` (process 0 only).

    `metrics.jsonl` follows the checkpoints: a run resumed from step S (or started over,
    S = 0) appends after S. Rows of an earlier run beyond S (logged after its last
    checkpoint, or by a run whose checkpoints are all gone) are never deleted: they move to
    `metrics.discarded.jsonl`, each tagged with the step the new run restarted from, and the
    run says so. So `metrics.jsonl` reads like one uninterrupted run, and nothing is lost.

    Epoch-hook rows (every key under `hook/`) are written with the step that ends the previous
    epoch, S, but are computed at the start of step S + 1, after S's checkpoint: a run resumed
    from S runs the hook again, so such a row at exactly S is set aside too, not duplicated.
    """

    def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.discarded_path = os.path.join(workdir, "metrics.discarded.jsonl")
        self._tb = None
        if not enabled:
            return
        if os.path.exists(self.path):
            self._set_aside_beyond(resume_step or 0)
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=10)

    def _set_aside_beyond(self, step: int) -> None:
        with open(self.path) as f:
            rows = [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]
        kept, beyond = [], []
        for r in rows:
            try:
                row = json.loads(r)
                metric_keys = [k for k in row if k != "step"]
                after_s = bool(metric_keys) and all(k.startswith("hook/") for k in metric_keys)
                covered = row["step"] < step or (row["step"] == step and not after_s)
                (kept if covered else beyond).append(r)
            except (ValueError, KeyError, TypeError):
                beyond.append(r)  # a torn last line of a killed run: kept aside, as is
        if not beyond:
            return
        with open(self.discarded_path, "a") as f:
            for r in beyond:
                try:
                    f.write(json.dumps({**json.loads(r), "restarted_from": step}) + "\n")
                except (ValueError, TypeError):
                    f.write(r)
        with open(self.path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(self.path + ".tmp", self.path)
        print(
            f"moved {len(beyond)} rows of metrics.jsonl logged after step {step} (not covered "
            f"by a checkpoint) to {self.discarded_path}",
            flush=True,
        )

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, step)
        with open(self.path, "a") as f:
            f.write(
                json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n"
            )

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class Progress:
    """One progress line per log step: step, chosen scalars, steps/s and ETA."""

    def __init__(
        self,
        total_steps: int,
        start_step: int,
        *,
        enabled: bool = True,
        stream=None,
        clock=time.perf_counter,
    ):
        self.total = total_steps
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self._clock = clock
        self._t0 = clock()
        self._s0 = start_step
        self.aside: dict[str, float] = {}  # seconds spent outside training steps, by kind

    def reset_clock(self, step: int) -> None:
        """Restart the rate clock (e.g. after the first step, which includes compilation)."""
        self._t0, self._s0 = self._clock(), step
        self.aside = {}

    @contextlib.contextmanager
    def timing(self, kind: str):
        """Time spent inside is `kind` (eval, checkpoint, ...), not training: steps/s leaves
        it out and the progress line reports it separately."""
        t0 = self._clock()
        try:
            yield
        finally:
            self.aside[kind] = self.aside.get(kind, 0.0) + self._clock() - t0

    def rate(self, step: int) -> float:
        """Training steps per second since the clock was reset, time set aside excluded."""
        dt = self._clock() - self._t0 - sum(self.aside.values())
        return (step - self._s0) / dt if dt > 0 and step > self._s0 else float("nan")

    def update(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate == rate and rate > 0 else float("nan")
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "?"
        shown = "  ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in scalars.items())
        aside = "".join(f", {k} {v:.1f}s" for k, v in sorted(self.aside.items()))
        print(
            f"step {step:>7d}/{self.total}  {shown}  {rate:.1f} steps/s (training only{aside})"
            f"  ETA {eta_s}",
            file=self.stream,
            flush=True,
        )
