"""One prepared accelerator run: devices, the iIVAE step at the default and Recipe1M shapes, the
Jacobian-cost sweep, data-parallel scaling over all local devices, and the DisNCL step when
`bench/disncl_step.py` exists. Started by `bench/accelerator.sh` (which also records
`nvidia-smi` and bounds the whole run with `timeout`):

    bash bench/accelerator.sh [OUT_DIR]             # GPU/TPU host, <= 8 minutes
    bash bench/accelerator.sh --dry-run [OUT_DIR]   # tiny sizes on CPU (tests/bench)

Writes `OUT_DIR/accelerator.json` (every timing, rewritten after each section, so a run cut
short keeps what it measured) and `OUT_DIR/accelerator.md` (the tables for
docs/performance.md). Every section is the library's own jitted step (`bench/common.py`
`JaxStep`: `TASKS["ivae"]`, `make_data_mesh`, `jit_train_step`); a section that fails or
would not fit in the time left is recorded as such and the run goes on.

Sections:
- `devices`: platform, kind, count, memory of `jax.devices()`.
- `ivae_step`: ms/step, compile time, FLOPs (jaxpr count) and FLOP/s against a large matmul
  timed in the same process, for `default` (configs/ivae_synthetic.py, exact terms) and
  `recipe` (D = 2,048, query 384, d = 16, estimated terms; `bench/ivae_step.py` shapes).
- `jacobian_cost`: the variants of `bench/jacobian_cost.py` on d = D = 5, 10, 16 factors
  (`plain`, `exact`, `estimated`) and on D = 64, 2,048 features (`plain`, `estimated`,
  `est-proj`); ratios to `plain` at the same D and to the same variant at the smallest D.
- `scaling`: the default step with a fixed per-device batch (weak scaling) over 1, 2, 4, ...
  and all local devices: examples/s and efficiency against N x one device.
- `disncl`: `python bench/disncl_step.py --json OUT_DIR/disncl.json [--dry-run]` in a
  subprocess with the time left, if that script exists; skipped with a message otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common

BENCH = os.path.dirname(os.path.abspath(__file__))
DISNCL = os.path.join(BENCH, "disncl_step.py")

# Dry-run (CPU) sizes: every section runs, on a model small enough to compile in seconds.
TINY = {
    "batch_size": 16,
    "model.flow.num_blocks": 2,
    "model.flow.hidden": (16,),
    "model.prior.hidden": (16,),
    "data.num_segments": 8,
    "data.points_per_segment": 50,
}


def timed(step, *, target_s: float, repeats: int) -> dict:
    """ms/step median [IQR] of `repeats` timings of about `target_s` each (after warm-up)."""
    step.run(2)
    t = step.run(3) / 3
    n = max(1, min(10_000, round(target_s / max(t, 1e-6))))
    per = [step.run(n) / n for _ in range(repeats)]
    return {"steps_per_timing": n, "seconds": per, "ms": common.summary([1e3 * v for v in per])}


class Run:
    """Holds the results, the deadline and the output files."""

    def __init__(self, out: str, budget_s: float, dry: bool):
        self.out, self.dry = out, dry
        self.deadline = time.monotonic() + budget_s
        self.results = {"dry_run": dry, "budget_s": budget_s, "sections": {}}
        self.target_s = 0.05 if dry else 0.5
        self.repeats = 3 if dry else 5

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def section(self, name: str, fn, *, needs_s: float):
        if self.left() < needs_s:
            self.results["sections"][name] = {
                "skipped": f"{self.left():.0f} s left, section needs ~{needs_s:.0f} s"
            }
        else:
            t0 = time.monotonic()
            try:
                self.results["sections"][name] = fn(self)
            except Exception as e:  # recorded; the other sections still run
                self.results["sections"][name] = {"error": f"{type(e).__name__}: {e}"}
            self.results["sections"][name]["wall_s"] = time.monotonic() - t0
        common.log(f"[accelerator] {name}: done, {self.left():.0f} s left")
        self.save()

    def save(self):
        with open(os.path.join(self.out, "accelerator.json"), "w") as f:
            json.dump(self.results, f, indent=2, default=str)
        with open(os.path.join(self.out, "accelerator.md"), "w") as f:
            f.write(markdown(self.results) + "\n")


# --------------------------------------------------------------------------- sections


def devices(run: Run) -> dict:
    import jax

    devs = jax.local_devices()
    out = {
        "platform": devs[0].platform,
        "device_kind": devs[0].device_kind,
        "local_device_count": len(devs),
        "device_count": jax.device_count(),
        "jax": jax.__version__,
    }
    try:
        stats = devs[0].memory_stats() or {}
        out["bytes_limit"] = stats.get("bytes_limit")
    except Exception:  # CPU devices have no memory stats
        out["bytes_limit"] = None
    return out


def ivae_step(run: Run) -> dict:
    import jax
    import jax.numpy as jnp

    n = 256 if run.dry else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    jax.block_until_ready(mm(a))
    t0 = time.perf_counter()
    reps = 3 if run.dry else 20
    jax.block_until_ready([mm(a) for _ in range(reps)])
    matmul_flops_s = 2.0 * n**3 * reps / (time.perf_counter() - t0)
    out = {"matmul_n": n, "matmul_gflop_s": matmul_flops_s / 1e9, "shapes": {}}
    for shape in ("default", "recipe"):
        if shape == "default":
            cfg = common.ivae_config()
        elif run.dry:
            cfg = common.ivae_config(
                target_dim=64, query_dim=32, latent_dim=4, num_examples=512, **_series()
            )
        else:
            cfg = common.ivae_config(**common.RECIPE_FEATURES, **_series())
        if run.dry:
            common.apply_overrides(cfg, TINY)
        step = common.JaxStep(cfg)
        compile_s = step.compile()
        t = timed(step, target_s=run.target_s, repeats=run.repeats)
        flops = step.jaxpr_flops()["total"]
        step_s = t["ms"]["median"] / 1e3
        out["shapes"][shape] = {
            "target_dim": int(step.batch["y"].shape[1]),
            "batch_size": int(cfg.batch_size),
            "compile_s": compile_s,
            **t,
            "gflop_per_step": flops / 1e9,
            "gflop_s": flops / step_s / 1e9,
            "fraction_of_matmul": flops / step_s / matmul_flops_s,
        }
    return out


def _series() -> dict:
    data_dir = os.path.join(common.OUT_DIR, "data")
    os.makedirs(data_dir, exist_ok=True)
    return {"logdet": "series", "spectral": "power", "data_dir": data_dir}


def jacobian_cost(run: Run) -> dict:
    import jacobian_cost as jc

    data_dir = _series()["data_dir"]
    if run.dry:
        grid = [(5, "plain", True), (5, "exact", True)]
    else:
        grid = [(d, v, True) for d in (5, 10, 16) for v in ("plain", "exact", "estimated")]
        grid += [(d, v, False) for d in (64, 2048) for v in ("plain", "estimated", "est-proj")]
    rows = {}
    for dim, variant, factors in grid:
        name = f"{'d=D' if factors else 'D'}={dim}/{variant}"
        if run.left() < 20:
            rows[name] = {"skipped": "out of time"}
            continue
        try:
            runner = jc.VariantRunner(
                dim, variant, data_dir, factors=factors, overrides=TINY if run.dry else None
            )
            t = timed(runner.step, target_s=run.target_s, repeats=run.repeats)
            rows[name] = {"dim": dim, "variant": variant, "factors": factors, **runner.info, **t}
        except Exception as e:
            rows[name] = {"error": f"{type(e).__name__}: {e}"}
    for name, row in rows.items():
        if "ms" not in row:
            continue
        prefix = name.split("/")[0]
        plain = rows.get(f"{prefix}/plain", {})
        if "ms" in plain:
            row["over_plain"] = row["ms"]["median"] / plain["ms"]["median"]
    return {"rows": rows}


def scaling(run: Run) -> dict:
    import jax

    per_device = 16 if run.dry else 256
    total = jax.local_device_count()
    counts = sorted({2**k for k in range(total.bit_length()) if 2**k <= total} | {total})
    rows = {}
    for n in counts:
        if run.left() < 20:
            rows[n] = {"skipped": "out of time"}
            continue
        cfg = common.ivae_config(batch_size=per_device * n)
        if run.dry:
            common.apply_overrides(cfg, {k: v for k, v in TINY.items() if k != "batch_size"})
        step = common.JaxStep(cfg, num_devices=n)
        compile_s = step.compile()
        t = timed(step, target_s=run.target_s, repeats=run.repeats)
        shards = len(step.batch["y"].sharding.device_set)
        rows[n] = {"batch_size": per_device * n, "batch_shards": shards, "compile_s": compile_s}
        rows[n] |= t | {"examples_per_s": per_device * n / (t["ms"]["median"] / 1e3)}
    base = rows.get(counts[0], {}).get("examples_per_s")
    for n, row in rows.items():
        if base and "examples_per_s" in row:
            row["efficiency"] = row["examples_per_s"] / (n * base)
    return {"per_device_batch": per_device, "rows": rows}


def disncl(run: Run) -> dict:
    if not os.path.exists(DISNCL):
        return {"skipped": "bench/disncl_step.py does not exist yet"}
    path = os.path.join(run.out, "disncl.json")
    cmd = [sys.executable, DISNCL, "--json", path] + (["--dry-run"] if run.dry else [])
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=max(10.0, run.left() - 5)
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{' '.join(cmd)} ran out of time"}
    out = {"command": " ".join(cmd), "returncode": proc.returncode, "log_tail": proc.stdout[-2000:]}
    if proc.returncode != 0:
        out["error"] = proc.stderr[-2000:]
    if os.path.exists(path):
        with open(path) as f:
            out["result"] = json.load(f)
    return out


# --------------------------------------------------------------------------- report


def _ms(t: dict) -> str:
    m = t["ms"]
    return f"{m['median']:.2f} [{m['q25']:.2f}-{m['q75']:.2f}]"


def markdown(results: dict) -> str:
    s = results["sections"]
    dev = s.get("devices", {})
    lines = [
        f"Device: {dev.get('device_kind', '?')} x {dev.get('local_device_count', '?')} "
        f"({dev.get('platform', '?')}, jax {dev.get('jax', '?')})"
        + (" - DRY RUN, tiny sizes on CPU: not a measurement" if results["dry_run"] else ""),
        "",
    ]
    step = s.get("ivae_step", {})
    if "shapes" in step:
        lines += [
            f"iIVAE step ({step['matmul_n']}^3 matmul: {step['matmul_gflop_s']:.0f} GFLOP/s)",
            "",
            "| shape | D | batch | ms/step median [IQR] | compile s | GFLOP/step | GFLOP/s |"
            " of matmul |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in step["shapes"].items():
            lines.append(
                f"| {name} | {r['target_dim']} | {r['batch_size']} | {_ms(r)} | "
                f"{r['compile_s']:.1f} | {r['gflop_per_step']:.3g} | {r['gflop_s']:.1f} | "
                f"{100 * r['fraction_of_matmul']:.1f}% |"
            )
        lines.append("")
    jc = s.get("jacobian_cost", {})
    if "rows" in jc:
        lines += [
            "Jacobian terms (d=D: the default job on D-factor data; D: d = 5, D-dim features)",
            "",
            "| data | variant | ms/step median [IQR] | vs plain | compile s |",
            "|---|---|---|---|---|",
        ]
        for name, r in jc["rows"].items():
            data, variant = name.split("/")
            if "ms" not in r:
                lines.append(f"| {data} | {variant} | {r.get('skipped') or r.get('error')} | | |")
                continue
            over = f"{r['over_plain']:.1f}x" if "over_plain" in r else "-"
            lines.append(f"| {data} | {variant} | {_ms(r)} | {over} | {r['compile_s']:.1f} |")
        lines.append("")
    sc = s.get("scaling", {})
    if "rows" in sc:
        lines += [
            f"Data-parallel weak scaling, {sc['per_device_batch']} examples per device",
            "",
            "| devices | batch | shards | ms/step median [IQR] | examples/s | efficiency |",
            "|---|---|---|---|---|---|",
        ]
        for n, r in sc["rows"].items():
            if "ms" not in r:
                lines.append(f"| {n} | {r.get('skipped')} | | | | |")
                continue
            eff = f"{100 * r['efficiency']:.0f}%" if "efficiency" in r else "-"
            lines.append(
                f"| {n} | {r['batch_size']} | {r['batch_shards']} | {_ms(r)} | "
                f"{r['examples_per_s']:,.0f} | {eff} |"
            )
        lines.append("")
    dn = s.get("disncl", {})
    table = dn.get("result", {}).get("markdown")
    if isinstance(table, str):
        lines += ["DisNCL step (bench/disncl_step.py):", "", table]
    else:
        lines.append(
            "DisNCL step: " + (dn.get("skipped") or dn.get("error") or json.dumps(dn.get("result")))
        )
    for name, sec in s.items():
        if "error" in sec or "skipped" in sec and name != "disncl":
            lines.append(f"Section {name}: {sec.get('error') or sec.get('skipped')}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes; CPU is fine")
    ap.add_argument("--budget-s", type=float, default=450.0)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    run = Run(args.out, args.budget_s, args.dry_run)
    run.results["machine"] = common.machine()
    run.section("devices", devices, needs_s=0)
    platform = run.results["sections"]["devices"].get("platform")
    if platform == "cpu" and not args.dry_run:
        run.results["sections"]["devices"]["error"] = "JAX sees no accelerator (jax[cuda12]?)"
        run.save()
        common.log("[accelerator] JAX sees only CPU devices; use --dry-run for a CPU run")
        return 2
    run.section("ivae_step", ivae_step, needs_s=30)
    run.section("scaling", scaling, needs_s=30)
    run.section("jacobian_cost", jacobian_cost, needs_s=30)
    run.section("disncl", disncl, needs_s=10)
    common.log(markdown(run.results))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, BENCH)
    sys.exit(main())
