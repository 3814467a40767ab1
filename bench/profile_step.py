"""Where the time of the jitted iIVAE step goes: an XLA CPU trace, aggregated by HLO op kind.

    .venv/bin/python bench/profile_step.py                     # default shapes
    .venv/bin/python bench/profile_step.py --shape recipe      # D = 2,048, estimators
    .venv/bin/python bench/profile_step.py --jacobian-mode rev # config override
    .venv/bin/python bench/profile_step.py --factors 10        # default job, d = D = 10

Traces `--steps` steps with `jax.profiler` (after compile and warm-up), reads the trace back
with `jax.profiler.ProfileData`, and sums the duration of every executed HLO thunk by kind
(`eigh.270` -> `eigh`; fusions by their fused op names). Times are CPU time summed over XLA's
worker threads (the two cores run thunks in parallel), per step; the share column is of the
summed thunk time. Tracing adds overhead: read shares, not absolute times.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile

import common
import ivae_step

WRAPPERS = ("ThunkExecutor", "Execute", "PjRt", "$")


def kind(name: str) -> str:
    return re.sub(r"\.\d+$", "", name)


def profile(shape: str, steps: int, overrides: dict, factors: int | None = None) -> dict:
    import jax

    cfg = common.ivae_config(factors=factors) if factors else ivae_step.shape_config(shape)
    for key, value in overrides.items():
        section, field = key.split(".")
        cfg[section][field] = value
    step = common.JaxStep(cfg)
    step.compile()
    step.run(3)
    wall = step.run(steps) / steps
    logdir = tempfile.mkdtemp(prefix="jaxmr_profile_")
    jax.profiler.start_trace(logdir)
    traced_wall = step.run(steps) / steps
    jax.profiler.stop_trace()
    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    data = jax.profiler.ProfileData.from_file(path)
    total = collections.Counter()
    count = collections.Counter()
    for plane in data.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if line.name == "python" or "PjRtCpuClient" in line.name:
                continue
            for ev in line.events:
                if ev.name.startswith(WRAPPERS):
                    continue
                total[kind(ev.name)] += ev.duration_ns
                count[kind(ev.name)] += 1
    summed = sum(total.values())
    rows = [
        {
            "kind": k,
            "ms_per_step": v / 1e6 / steps,
            "share": v / summed,
            "calls_per_step": count[k] / steps,
        }
        for k, v in total.most_common()
    ]
    return {
        "shape": shape,
        "factors": factors,
        "overrides": overrides,
        "wall_ms_per_step": 1e3 * wall,
        "traced_wall_ms_per_step": 1e3 * traced_wall,
        "thunk_cpu_ms_per_step": summed / 1e6 / steps,
        "rows": rows,
    }


def group(rows) -> dict[str, float]:
    """Shares by coarse category: LAPACK decompositions, matmul-like ops, the rest."""
    out = collections.Counter()
    for r in rows:
        k = r["kind"]
        if k.startswith(("eigh", "lu", "cholesky", "triangular", "custom-call")):
            out["LAPACK (eigh/LU/solves)"] += r["share"]
        elif k.startswith(("dot", "ynn", "convolution")) or "dot" in k:
            out["matmul (dot / ynn kernels)"] += r["share"]
        elif "fusion" in k:
            out["element-wise fusions"] += r["share"]
        else:
            out["other (copies, loops, RNG, ...)"] += r["share"]
    return dict(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="default", choices=("default", "recipe"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--logdet", default=None)
    ap.add_argument("--spectral", default=None)
    ap.add_argument("--jacobian-mode", default=None)
    ap.add_argument(
        "--factors", type=int, default=None, help="default shapes on d = D = N factor data"
    )
    args = ap.parse_args(argv)
    overrides = {
        f"loss.{k}": v
        for k, v in (
            ("logdet", args.logdet),
            ("spectral", args.spectral),
            ("jacobian_mode", args.jacobian_mode),
        )
        if v
    }
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if args.factors and args.shape != "default":
        ap.error("--factors goes with --shape default")
    result = profile(args.shape, args.steps, overrides, args.factors)
    result["groups"] = group(result["rows"])
    shape = f"factors{args.factors}" if args.factors else args.shape
    tag = "_".join([shape] + [f"{k.split('.')[1]}-{v}" for k, v in overrides.items()])
    path = common.save(f"profile_{tag}", result)
    common.log(
        f"{shape} {overrides or ''}: wall {result['wall_ms_per_step']:.2f} ms/step "
        f"(traced {result['traced_wall_ms_per_step']:.2f}), thunk CPU time "
        f"{result['thunk_cpu_ms_per_step']:.2f} ms/step over XLA's threads"
    )
    common.log("| op kind | CPU ms/step | share | calls/step |\n|---|---|---|---|")
    for r in result["rows"][: args.top]:
        common.log(
            f"| {r['kind']} | {r['ms_per_step']:.3f} | {100 * r['share']:.1f}% | "
            f"{r['calls_per_step']:.0f} |"
        )
    common.log("\n| category | share |\n|---|---|")
    for k, v in sorted(result["groups"].items(), key=lambda kv: -kv[1]):
        common.log(f"| {k} | {100 * v:.1f}% |")
    common.log(f"saved {path}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
