"""iIVAE train-step throughput: the library's jitted JAX step against a PyTorch peer of the same
model and Jacobian penalty, and the step's achieved FLOP/s against a large matmul.

    .venv/bin/python bench/ivae_step.py              # full run (~10-15 min on 2 busy cores)
    .venv/bin/python bench/ivae_step.py --quick      # smoke run (~3 min)

Shapes:
- `default`: `configs/ivae_synthetic.py` as it is (D = d = 5, query 20, 6 residual blocks of
  64-64 tanh with affine layers, prior 64-64, batch 256, exact log det and spectral norm);
- `recipe`: Recipe1M at feature level, D = 2,048 (ResNet-50 image features), query 384
  (MiniLM-L6 text features), d = 16, same networks, power-iteration spectral norm and
  Hutchinson power-series log det (exact terms at D = 2,048 are out of reach: see
  `bench/jacobian_cost.py`).

Each implementation runs in its own process; the controller times them in turn, rotating the
order each repetition, and reports medians and the median of the per-repetition ratios.
PyTorch runs with as many threads as XLA uses (2 here) and, because OpenMP threads degrade
badly on a shared machine, also with 1 thread; Jacobians by `vmap(jacrev)` and `vmap(jacfwd)`.
The JAX step's `auto` mode forms the branch Jacobians from the MLPs' weights and activation
slopes (`jaxmr.losses.mlp_jacobian_transposed`; `fwd` was forward-mode autodiff).

Compiled peer (default shapes): `torch.compile` of the peer's loss in each of
`--compile-modes` (`default`, `max-autotune-no-cudagraphs`), with the Jacobians by
`torch.func.vmap(jacrev)` traced through by Dynamo (`--compile-jacobians`), the backward by
AOTAutograd and Adam eager. Each compiled variant is timed in the same interleaved rounds as
the others; its compile time (the first compiled forward, then the first step, which compiles
the backward) is reported apart, with the compiled loss's relative difference from the eager
loss on the same parameters and batch. The JAX step is compiled too (XLA, `jit`), so this is
compiled against compiled; the eager rows are what the field's reference code runs.

    .venv/bin/python bench/ivae_step.py --shapes default --eager-modes rev,rev-ew \
        --compile-modes default,max-autotune-no-cudagraphs --repeats 7

FLOP/s: XLA's cost analysis of the compiled step (loop bodies counted once and LAPACK calls not
at all, so a lower bound), torch's FlopCounterMode on one eager step of the peer (every matmul
executed, the better count), divided by the JAX median step time; the reference is a jitted
2,048^3 float32 matmul timed in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import common

JAX_ENV = {"JAX_PLATFORMS": "cpu"}


# --------------------------------------------------------------------------- runners


def shape_config(shape: str):
    if shape == "default":
        return common.ivae_config()
    return common.ivae_config(
        **common.RECIPE_FEATURES, logdet="series", spectral="power", data_dir=_data_dir()
    )


def _data_dir() -> str:
    path = os.path.join(common.OUT_DIR, "data")
    os.makedirs(path, exist_ok=True)
    return path


class JaxRunner:
    def __init__(self, shape: str, jacobian_mode: str | None = None):
        cfg = shape_config(shape)
        if jacobian_mode:  # e.g. `fwd`: the exact terms' Jacobians by autodiff (before cb888de)
            cfg.loss.jacobian_mode = jacobian_mode
        self.step = common.JaxStep(cfg)
        compile_s = self.step.compile()
        self.info = {
            "compile_s": compile_s,
            "xla_flops": self.step.flops(),
            "jaxpr_flops": self.step.jaxpr_flops()["total"],
        }
        batch = self.step.loader.batch(0)
        self.info["x_dim"], self.info["y_dim"] = batch["x"].shape[1], batch["y"].shape[1]

    def run(self, n):
        return self.step.run(n)


class MatmulRunner:
    """Jitted [n, n] @ [n, n] float32: the machine's large-matmul rate, timed in the rounds."""

    def __init__(self, n: int = 2048, framework: str = "jax", threads: int | None = None):
        self.flops = 2.0 * n**3
        self.framework = framework
        if framework == "jax":
            import jax
            import jax.numpy as jnp

            a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
            self.a, self.jax = a, jax
            self.fn = jax.jit(lambda a, b: a @ b)
            jax.block_until_ready(self.fn(a, a))
        else:
            import torch

            if threads:
                torch.set_num_threads(threads)
            self.a = torch.randn(n, n)
            self.torch = torch
            self.a @ self.a
        self.info = {"flops": self.flops}

    def run(self, k):
        t0 = time.perf_counter()
        if self.framework == "jax":
            outs = [self.fn(self.a, self.a) for _ in range(k)]
            self.jax.block_until_ready(outs)
        else:
            for _ in range(k):
                self.a @ self.a
        return time.perf_counter() - t0


class TorchRunner:
    def __init__(self, shape: str, threads: int, jacobian: str, compile_mode: str | None = None):
        import torch_ivae

        cfg = shape_config(shape)
        dims = _dims(cfg)
        self.step = torch_ivae.TorchStep(
            common.config_shapes(cfg),
            dims[0],
            dims[1],
            threads=threads,
            jacobian=jacobian,
            compile_mode=compile_mode,
        )
        self.info = dict(self.step.info)
        # Counting FLOPs re-runs the loss in forward mode: eager runners only (a compiled
        # loss would recompile for it).
        self.info["torch_flops"] = None if compile_mode else _torch_flops(self.step)

    def run(self, n):
        return self.step.run(n)


def _dims(cfg) -> tuple[int, int]:
    if cfg.data.path:
        import numpy as np

        with np.load(cfg.data.path) as f:
            return f["u"].shape[1], f["x"].shape[1]
    return int(cfg.data.query_dim), int(cfg.data.target_dim)


def _torch_flops(step) -> float | None:
    """FLOPs of one eager step (FlopCounterMode cannot see through jacrev; use jacfwd, the same
    matmuls as the JAX step's forward-mode square Jacobians)."""
    from torch.utils.flop_counter import FlopCounterMode

    mode = step.jacobian
    step.jacobian = "fwd"
    try:
        with FlopCounterMode(display=False) as counter:
            step.step()
        return float(counter.get_total_flops())
    except RuntimeError:
        return None
    finally:
        step.jacobian = mode


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--shapes", default="default,recipe")
    ap.add_argument("--target-s", type=float, default=None, help="seconds per timing")
    ap.add_argument(
        "--eager-modes",
        default="rev,fwd,rev-ew",
        help="Jacobian modes of the eager PyTorch peer at the default shapes",
    )
    ap.add_argument(
        "--compile-modes",
        default="default,max-autotune-no-cudagraphs",
        help="torch.compile modes of the peer at the default shapes ('' for none)",
    )
    ap.add_argument(
        "--compile-jacobians",
        default="rev",
        help="Jacobian modes compiled (torch.func vmap(jacrev) compiles; see the docstring)",
    )
    ap.add_argument("--threads", default=None, help="torch thread counts (default: cores,1)")
    ap.add_argument(
        "--jax-one-core",
        action="store_true",
        help="also time the JAX step in a worker pinned to one core (label jax-1core)",
    )
    ap.add_argument(
        "--compile-threads", default=None, help="thread counts of the compiled peer (default: all)"
    )
    ap.add_argument(
        "--jax-before",
        action="store_true",
        help="also time the default-shape JAX step with loss.jacobian_mode=fwd (label jax-fwd: "
        "the branch Jacobians by jacfwd, as before they came from the MLPs' weights)",
    )
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 11)
    target_s = args.target_s or (0.3 if args.quick else 1.0)
    shapes = args.shapes.split(",")
    thread_counts = (
        [int(v) for v in args.threads.split(",")] if args.threads else [os.cpu_count(), 1]
    )
    eager_modes = tuple(args.eager_modes.split(","))
    compiled = [
        (f"{jm}-compile-{cm}", jm, cm)
        for cm in filter(None, args.compile_modes.split(","))
        for jm in args.compile_jacobians.split(",")
    ]

    compile_threads = (
        [int(v) for v in args.compile_threads.split(",")] if args.compile_threads else None
    )

    def modes_for(s, th):
        eager = eager_modes if s == "default" else ("rev",)
        with_compiled = s == "default" and (compile_threads is None or th in compile_threads)
        return [(m, m, None) for m in eager] + (compiled if with_compiled else [])

    info = common.machine()
    common.log(f"machine: {info}")
    common.log("starting workers (JAX compiles, torch warms up)...")
    before = (
        {"default-fwd": (JaxRunner, {"shape": "default", "jacobian_mode": "fwd"})}
        if args.jax_before and "default" in shapes
        else {}
    )
    jax_w = common.Worker(
        {s: (JaxRunner, {"shape": s}) for s in shapes}
        | before
        | {"matmul": (MatmulRunner, {"framework": "jax"})},
        env=JAX_ENV,
        wait=False,
    )
    # One worker per thread count for the eager peer, one per thread count and compile mode
    # for the compiled peer (compiling takes minutes: the workers build at the same time).
    torch_ws, owner = {}, {}
    for th in sorted(set(thread_counts), reverse=True):
        groups = {None: {}}
        for s in shapes:
            for name, jm, cm in modes_for(s, th):
                groups.setdefault(cm, {})[f"{s}/{name}"] = (
                    TorchRunner,
                    {"shape": s, "threads": th, "jacobian": jm, "compile_mode": cm},
                )
        groups[None]["matmul"] = (MatmulRunner, {"framework": "torch", "threads": th})
        for cm, factories in groups.items():
            w = common.Worker(factories, wait=False)
            torch_ws[(th, cm)] = w
            owner.update({(th, name): w for name in factories})
    jax1_w = None
    if args.jax_one_core:
        jax1_w = common.Worker(
            {s: (JaxRunner, {"shape": s}) for s in shapes}, env=JAX_ENV, cores=1, wait=False
        )
    for w in [jax_w, *torch_ws.values(), *([jax1_w] if jax1_w else [])]:
        w.wait()
    results = {"machine": info, "repeats": repeats, "shapes": {}}
    try:
        for s in shapes:
            targets = [("jax", jax_w, s)]
            for th in sorted(set(thread_counts), reverse=True):
                targets += [
                    (f"torch-{th}t-{m}", owner[(th, f"{s}/{m}")], f"{s}/{m}")
                    for m, _, _ in modes_for(s, th)
                ]
            if jax1_w:
                targets += [("jax-1core", jax1_w, s)]
            if f"{s}-fwd" in before:
                targets += [("jax-fwd", jax_w, f"{s}-fwd")]
            targets += [("jax-matmul", jax_w, "matmul")]
            steps = {lab: common.calibrate(w, name, target_s) for lab, w, name in targets}
            common.log(f"[{s}] steps per timing: {steps}")
            times = common.interleaved(targets, steps=steps, repeats=repeats, log=common.log)
            results["shapes"][s] = _report(s, times, jax_w, owner)
        results["torch_matmul"] = {
            th: common.summary([w.run("matmul", 3) / 3 for _ in range(repeats)])
            for (th, cm), w in torch_ws.items()
            if cm is None
        }
    finally:
        jax_w.close()
        if jax1_w:
            jax1_w.close()
        for w in torch_ws.values():
            w.close()
    path = common.save("ivae_step_quick" if args.quick else "ivae_step", results)
    common.log(_markdown(results))
    common.log(f"saved {path}")


def _report(shape, times, jax_w, owner):
    jinfo = jax_w.info[shape]
    jt = times["jax"]
    mm = common.summary(times["jax-matmul"])
    peak = jax_w.info["matmul"]["flops"] / mm["median"]
    rows = {}
    torch_flops = None
    for label, t in times.items():
        if not label.startswith("torch"):
            continue
        th = int(label.split("-")[1][:-1])
        mode = label.split("-", 2)[2]
        tinfo = owner[(th, f"{shape}/{mode}")].info[f"{shape}/{mode}"]
        torch_flops = torch_flops or tinfo.get("torch_flops")
        rows[label] = {
            "ms": common.summary([1e3 * v for v in t]),
            "ratio_torch_over_jax": common.paired_ratio(t, jt),
            "ratio_torch_over_jax_1core": (
                common.paired_ratio(t, times["jax-1core"]) if "jax-1core" in times else None
            ),
            "first_step_s": tinfo["first_step_s"],
            "compiled": "compile_mode" in tinfo,
            "compile_forward_s": tinfo.get("compile_forward_s"),
            "loss_rel_diff_vs_eager": tinfo.get("loss_rel_diff_vs_eager"),
        }
    flops = jinfo["jaxpr_flops"]
    step_s = common.summary(jt)["median"]
    before = None
    if "jax-fwd" in times:
        binfo = jax_w.info[f"{shape}-fwd"]
        b_s = common.summary(times["jax-fwd"])["median"]
        before = {
            "ms": common.summary([1e3 * v for v in times["jax-fwd"]]),
            "over_jax": common.paired_ratio(times["jax-fwd"], jt),
            "flops_per_step_jaxpr": binfo["jaxpr_flops"],
            "step_gflops": binfo["jaxpr_flops"] / b_s / 1e9,
            "step_fraction_of_matmul": binfo["jaxpr_flops"] / b_s / peak,
            "compile_s": binfo["compile_s"],
        }
    return {
        "x_dim": jinfo["x_dim"],
        "y_dim": jinfo["y_dim"],
        "jax_ms": common.summary([1e3 * v for v in jt]),
        "jax_compile_s": jinfo["compile_s"],
        "torch": rows,
        "jax_1core_ms": (
            common.summary([1e3 * v for v in times["jax-1core"]]) if "jax-1core" in times else None
        ),
        "jax_1core_over_jax": (
            common.paired_ratio(times["jax-1core"], jt) if "jax-1core" in times else None
        ),
        "best_torch": min(rows, key=lambda k: rows[k]["ms"]["median"]),
        "best_eager_torch": _best(rows, compiled=False),
        "best_compiled_torch": _best(rows, compiled=True),
        "flops_per_step_jaxpr": flops,
        "flops_per_step_xla": jinfo["xla_flops"],
        "flops_per_step_torch_counter": torch_flops,
        "matmul_gflops": peak / 1e9,
        "step_gflops": flops / step_s / 1e9,
        "step_fraction_of_matmul": flops / step_s / peak,
        "raw_seconds_per_step": times,
        "jax_fwd": before,
    }


def _best(rows, *, compiled: bool) -> str | None:
    """The variant with the smallest median paired ratio to JAX among eager or compiled."""
    pick = [k for k, r in rows.items() if r["compiled"] == compiled]
    return min(pick, key=lambda k: rows[k]["ratio_torch_over_jax"]["median"]) if pick else None


def _markdown(results) -> str:
    lines = [
        "| shape | implementation | ms/step median [IQR] | torch / JAX (paired) | "
        "compile or first step |",
        "|---|---|---|---|---|",
    ]
    for s, r in results["shapes"].items():
        ms = r["jax_ms"]
        lines.append(
            f"| {s} (D={r['y_dim']}) | JAX jit | {ms['median']:.1f} [{ms['q25']:.1f}-"
            f"{ms['q75']:.1f}] | 1 | compile {r['jax_compile_s']:.1f} s |"
        )
        for label, row in r["torch"].items():
            m = row["ms"]
            first = f"first step {row['first_step_s']:.2f} s"
            if row["compiled"]:
                first = (
                    f"compile: forward {row['compile_forward_s']:.0f} s + first step "
                    f"{row['first_step_s']:.0f} s; loss vs eager "
                    f"{row['loss_rel_diff_vs_eager']:.1e}"
                )
            lines.append(
                f"| | {label} | {m['median']:.1f} [{m['q25']:.1f}-{m['q75']:.1f}] | "
                f"{common.fmt_ratio(row['ratio_torch_over_jax'])} | {first} |"
            )
    for s, r in results["shapes"].items():
        for kind in ("eager", "compiled"):
            best = r[f"best_{kind}_torch"]
            if best:
                ratio = common.fmt_ratio(r["torch"][best]["ratio_torch_over_jax"])
                lines.append(f"\n{s}: fastest {kind} PyTorch ({best}) / JAX = {ratio}")
                r1 = r["torch"][best]["ratio_torch_over_jax_1core"]
                if r1:
                    lines.append(f"{s}: {best} / JAX pinned to 1 core = {common.fmt_ratio(r1)}")
        if r["jax_1core_ms"]:
            m = r["jax_1core_ms"]
            lines.append(
                f"{s}: JAX pinned to 1 core {m['median']:.1f} [{m['q25']:.1f}-{m['q75']:.1f}]"
                f" ms = {common.fmt_ratio(r['jax_1core_over_jax'])} the 2-thread JAX step"
            )
    lines += [
        "",
        "| shape | FLOPs/step (jaxpr count) | torch counter | XLA cost analysis | "
        "JAX step GFLOP/s | 2048^3 matmul GFLOP/s | fraction |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, r in results["shapes"].items():
        tf = r["flops_per_step_torch_counter"]
        lines.append(
            f"| {s} | {r['flops_per_step_jaxpr'] / 1e9:.3f} G | "
            f"{f'{tf / 1e9:.3f} G' if tf else 'n/a'} | "
            f"{r['flops_per_step_xla'] / 1e9:.3f} G | {r['step_gflops']:.1f} | "
            f"{r['matmul_gflops']:.1f} | {100 * r['step_fraction_of_matmul']:.1f}% |"
        )
        b = r.get("jax_fwd")
        if b:
            lines.append(
                f"| {s}, jacobian_mode=fwd ({b['ms']['median']:.1f} ms, "
                f"{common.fmt_ratio(b['over_jax'])} the JAX step) | "
                f"{b['flops_per_step_jaxpr'] / 1e9:.3f} G | | | {b['step_gflops']:.1f} | "
                f"{r['matmul_gflops']:.1f} | {100 * b['step_fraction_of_matmul']:.1f}% |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
