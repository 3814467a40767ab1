"""Cost of the exact Jacobian terms alone: value and gradient of `lapack_free`'s log |det(I + J)|
and spectral norm on the default step's per-example Jacobians ([6 blocks, 256, n, n]), for the
LU as the library runs it and as a `fori_loop` above n = 8 (the library before the batch-last
unrolled LU), interleaved in one process.

    .venv/bin/python bench/exact_terms.py                # n = 5, 10, 16; 7 repetitions
    .venv/bin/python bench/exact_terms.py --dims 10 --repeats 3

Prints a markdown table of ms per value-and-gradient (median [IQR]), the paired ratio of the
loop LU to the library's, and compile times; writes bench/out/exact_terms.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import common


def build(n: int, term: str, unroll_max: int | None):
    """A jitted value-and-gradient of one exact term; `unroll_max` overrides
    `lapack_free.UNROLL_MAX` while tracing (None: the library's setting)."""
    import jax
    import numpy as np

    from jaxmr.losses import lapack_free

    fn = {
        "logdet": lapack_free.log_abs_det_identity_plus,
        "sigma": lapack_free.spectral_norm_gram,
    }[term]
    jac = 0.6 * jax.random.normal(jax.random.key(n), (6, 256, n, n)) / np.sqrt(n)
    grad = jax.jit(jax.value_and_grad(lambda j: fn(j).sum()))
    saved = lapack_free.UNROLL_MAX
    if unroll_max is not None:
        lapack_free.UNROLL_MAX = unroll_max
    try:
        t0 = time.perf_counter()
        compiled = grad.lower(jac).compile()
        compile_s = time.perf_counter() - t0
    finally:
        lapack_free.UNROLL_MAX = saved
    jax.block_until_ready(compiled(jac))

    def run(k: int) -> float:
        t0 = time.perf_counter()
        jax.block_until_ready([compiled(jac) for _ in range(k)])
        return (time.perf_counter() - t0) / k

    return run, compile_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="5,10,16")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, common.REPO)
    cases = {}
    for n in [int(v) for v in args.dims.split(",")]:
        cases[f"{n}/logdet"] = build(n, "logdet", None)
        if n > 8:
            cases[f"{n}/logdet-loop"] = build(n, "logdet", 0)
        cases[f"{n}/sigma"] = build(n, "sigma", None)
    names = list(cases)
    steps = {k: max(1, round(0.3 / max(cases[k][0](2), 1e-6))) for k in names}
    times = {k: [] for k in names}
    for r in range(args.repeats):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            time.sleep(0.05)
            times[k].append(cases[k][0](steps[k]))
    lines = [
        "| n | term | ms (value + gradient) | vs library LU | compile s |",
        "|---|---|---|---|---|",
    ]
    out = {"machine": common.machine(), "raw": times, "rows": {}}
    for k in names:
        n, term = k.split("/")
        ref = times.get(f"{n}/logdet") if term == "logdet-loop" else None
        ratio = common.paired_ratio(times[k], ref) if ref else None
        out["rows"][k] = {"s": common.summary(times[k]), "over_library": ratio}
        out["rows"][k]["compile_s"] = cases[k][1]
        lines.append(
            f"| {n} | {term} | {common.fmt_ms(times[k])} | "
            f"{common.fmt_ratio(ratio) if ratio else '-'} | {cases[k][1]:.1f} |"
        )
    path = common.save("exact_terms", out)
    common.log("\n".join(lines))
    common.log(f"saved {path}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
