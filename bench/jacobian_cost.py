"""Cost of each Jacobian term of the iIVAE `implicit` step, and how it grows with the target
dimension D from 5 to 2,048.

    .venv/bin/python bench/jacobian_cost.py            # full run (~20 min on 2 busy cores)
    .venv/bin/python bench/jacobian_cost.py --quick    # D = 5, 64, 2048; 2 repetitions
    .venv/bin/python bench/jacobian_cost.py --factors --dims 5,10,16   # d = D data, exact terms

Every variant is the library's jitted train step (`TASKS["ivae"]` + `jit_train_step`, Adam,
batch 256, 6 residual blocks of 64-64 tanh, query 20, d = 5; D > d uses the full-dimensional
flow) with its objective changed only in which Jacobian terms it computes:

| variant     | objective                                                            |
|-------------|----------------------------------------------------------------------|
| `plain`     | -log p(g(y)|x) - sum log-scales: no Jacobian term (not a valid loss; the floor) |
| `sn-exact`  | plain + penalty on exact ||J_h||_2 (per-example J, the library's norm) |
| `sn-power`  | plain + penalty on ||J_h||_2 by 8 JVP/VJP power-iteration steps       |
| `ld-exact`  | plain - sum_k log|det(I + J_hk)| exactly (J, the library's LU)       |
| `ld-series` | plain - the 8-term power series with one Hutchinson probe            |
| `exact`     | the library's `implicit` loss, logdet=exact, spectral=exact (J shared) |
| `estimated` | the library's `implicit` loss, logdet=series, spectral=power          |
| `est-lean`  | `estimated` with power_iters=2, series_terms=4 (config only)          |
| `est-sub32` | `estimated` with both terms on a random sub-batch of 32 of the 256     |
| `est-proj`  | `estimated` with `target_projection="auto"`: g = F o P, P the fixed top-d |
|             | principal directions, F a flow on R^d (the library's D > d default since 2275298) |
| `exact-lapack` | `exact` by LAPACK (`slogdet`, `eigvalsh`): the exact path before       |
|             | `jaxmr.losses.lapack_free`; D = 5 only (deadlocks XLA:CPU at D >= 10) |
| `exact-loop` | `exact` with the LU as a `fori_loop` for every n > 8                  |
|             | (`lapack_free.UNROLL_MAX = 0`): the library before the batch-last LU  |
| `exact-fwd` | `exact` with `loss.jacobian_mode="fwd"`: per-block Jacobians by `jacfwd`  |
|             | instead of from the MLPs' weights and slopes (the library before cb888de) |

With `--factors` every D is the default job on D-factor synthetic data (d = D: the
embedded generator with `data.latent_dim = data.target_dim = D`) instead of d = 5 and a
D-dimensional feature file, and step times are also compared to the same variant at the
smallest D (the d = 10 vs d = 5 ratio of the default step is `exact` at D = 10 over D = 5).

Every variant calls the library (`ResidualFlow.forward_with_blocks`, then
`jaxmr.losses.flow.residual_flow_jacobian_terms` with `logdet`/`spectral` set to `none` for the
terms a variant leaves out); `exact-lapack` and
`exact-loop` replace a `jaxmr.losses.lapack_free` function or setting while the step is
traced. Exact terms are measured up to `--exact-max-d` (64): they form a
[256, D, D] Jacobian per block (4 GiB at D = 2,048) and spend O(D^3) per example on it.

All variants live in one process and are timed in turn, each repetition in a rotated order,
so the ratios between them (to `plain` at the same D, and of `estimated` at D against D = 64)
are side-by-side measurements.
"""

from __future__ import annotations

import argparse
import os
import sys

import common

JAX_ENV = {"JAX_PLATFORMS": "cpu"}
VARIANTS = (
    "plain",
    "sn-exact",
    "sn-power",
    "ld-exact",
    "ld-series",
    "exact",
    "estimated",
    "est-lean",
    "est-sub32",
    "exact-lapack",
    "est-proj",
    "exact-loop",
    "exact-fwd",
)
EXACT = ("sn-exact", "ld-exact", "exact", "exact-lapack", "exact-loop", "exact-fwd")
WITH_EXACT_LOGDET = ("ld-exact", "exact", "exact-lapack", "exact-loop", "exact-fwd")


def term_loss(logdet=None, spectral=None, subbatch=None):
    """Objective factory for `common.JaxStep(loss_fn=...)`: the implicit loss with only the
    given terms (None: skip), computed by the library's `ResidualFlow.forward_with_blocks` and
    `residual_flow_jacobian_terms` (mirrors `jaxmr.tasks.ivae`'s implicit loss).
    With `subbatch`, the flow runs on the whole batch and its terms on that many random rows
    (a second pass of the flow over those rows)."""

    def factory(task, config):
        import jax
        import jax.numpy as jnp

        from jaxmr.losses import flow as flow_lib
        from jaxmr.losses import jacobian as jac_lib
        from jaxmr.losses import vae as vae_lib

        bind, d, cfg = task.info["bind"], task.info["latent_dim"], config.loss

        def loss_fn(params, batch, ctx):
            model = bind(params)
            y = batch["y"]
            terms = dict(
                logdet=logdet or "none",
                spectral=spectral or "none",
                jacobian_mode=cfg.jacobian_mode,
                power_iters=cfg.power_iters,
                series_terms=cfg.series_terms,
                probes=cfg.probes,
            )
            z_full, linear_log_det, blocks = model.flow.forward_with_blocks(y)
            if subbatch is not None:
                rows = jax.random.choice(
                    jax.random.fold_in(ctx.key, 7), y.shape[0], (subbatch,), replace=False
                )
                # Slopes dropped: the terms recompute them on the sub-batch.
                blocks = [(h, y_k[rows], a_k) for h, y_k, a_k, *_ in blocks]
            logdets, sigmas = flow_lib.residual_flow_jacobian_terms(
                blocks, ctx.key, linear_log_det=linear_log_det, **terms
            )
            mean, logvar = model.prior(batch["x"])
            log_prior = vae_lib.gaussian_log_prob(z_full[:, :d], mean, logvar)
            if z_full.shape[1] > d:
                log_prior = log_prior + flow_lib.isotropic_log_prob(
                    z_full[:, d:], model.extra_logvar[...]
                )
            loss = -(cfg.beta * jnp.mean(log_prior) + jnp.mean(logdets))
            if spectral is not None:
                pen = jac_lib.lipschitz_hinge_penalty(sigmas, bound=cfg.lipschitz_bound)
                loss = loss + cfg.gamma * jnp.mean(pen)
            return loss, {"log_prior": jnp.mean(log_prior)}

        return loss_fn

    return factory


class VariantRunner:
    def __init__(
        self,
        target_dim: int,
        variant: str,
        data_dir: str,
        probe_steps: int = 0,
        factors: bool = False,
        overrides: dict | None = None,
    ):
        kwargs = dict(target_dim=target_dim, data_dir=data_dir, num_examples=4096)
        if factors:
            kwargs = dict(factors=target_dim)
        loss_fn = None
        # Library module attributes replaced while the step is traced (compile and FLOP count).
        patches = {}
        if variant in ("exact", "exact-loop", "exact-fwd", "exact-lapack"):
            cfg = common.ivae_config(**kwargs)
            from jaxmr.losses import jacobian as jac_lib
            from jaxmr.losses import lapack_free

            if variant == "exact-loop":
                patches[lapack_free, "UNROLL_MAX"] = 0
            if variant == "exact-fwd":
                cfg.loss.jacobian_mode = "fwd"
            if variant == "exact-lapack":
                patches[lapack_free, "log_abs_det_identity_plus"] = (
                    jac_lib.log_abs_det_identity_plus
                )
                patches[lapack_free, "spectral_norm_gram"] = jac_lib.spectral_norm
        elif variant in ("estimated", "est-lean", "est-proj"):
            cfg = common.ivae_config(logdet="series", spectral="power", **kwargs)
            if variant == "est-lean":
                cfg.loss.power_iters, cfg.loss.series_terms = 2, 4
            if variant == "est-proj":
                if "target_projection" not in cfg.model:
                    raise ValueError("this library has no config.model.target_projection")
                cfg.model.target_projection = "auto"
        else:
            cfg = common.ivae_config(**kwargs)
            terms = {
                "plain": {},
                "sn-exact": {"spectral": "exact"},
                "sn-power": {"spectral": "power"},
                "ld-exact": {"logdet": "exact"},
                "ld-series": {"logdet": "series"},
                "est-sub32": {"logdet": "series", "spectral": "power", "subbatch": 32},
            }[variant]
            loss_fn = term_loss(**terms)
        common.apply_overrides(cfg, overrides)
        self.step = common.JaxStep(cfg, loss_fn=loss_fn)
        saved = {key: getattr(*key) for key in patches}
        for (module, name), value in patches.items():
            setattr(module, name, value)
        try:  # the step is traced here; a module setting only matters until then
            self.info = {
                "compile_s": self.step.compile(),
                "flops": self.step.jaxpr_flops()["total"],
            }
        finally:
            for (module, name), value in saved.items():
                setattr(module, name, value)
        self.info["finite"] = bool(abs(self.step.loss()) < float("inf"))
        if probe_steps:
            self.run(probe_steps)

    def run(self, n):
        return self.step.run(n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dims", default=None, help="comma-separated target dimensions")
    ap.add_argument("--exact-max-d", type=int, default=64)
    ap.add_argument("--variants", default=None, help="comma-separated subset of VARIANTS")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--target-s", type=float, default=None)
    ap.add_argument(
        "--exact-logdet-max-d",
        type=int,
        default=256,
        help="largest D for the exact log det (it can hang on 2 threads: see the docstring)",
    )
    ap.add_argument(
        "--factors",
        action="store_true",
        help="d = D synthetic data (the default job at D factors) instead of d = 5 features",
    )
    ap.add_argument("--cores", type=int, default=None, help="pin the worker to this many cores")
    ap.add_argument("--probe-timeout", type=float, default=240.0)
    args = ap.parse_args(argv)
    dims = [
        int(v)
        for v in (args.dims or ("5,64,2048" if args.quick else "5,16,64,256,1024,2048")).split(",")
    ]
    repeats = args.repeats or (2 if args.quick else 7)
    target_s = args.target_s or (0.2 if args.quick else 0.6)
    data_dir = os.path.join(common.OUT_DIR, "data")
    os.makedirs(data_dir, exist_ok=True)

    info = common.machine()
    common.log(f"machine: {info}")
    factories = {}
    for dim in dims:
        for v in VARIANTS:
            if args.variants and v not in args.variants.split(","):
                continue
            if v in EXACT and dim > args.exact_max_d:
                continue
            if v in WITH_EXACT_LOGDET and dim > args.exact_logdet_max_d:
                continue
            if v == "exact-lapack" and dim > 5:
                continue
            if v == "exact-loop" and dim <= 8:
                continue
            if v in ("est-lean", "est-sub32", "est-proj") and dim not in (64, 2048, max(dims)):
                continue
            factories[f"{dim}/{v}"] = (
                VariantRunner,
                {"target_dim": dim, "variant": v, "data_dir": data_dir, "factors": args.factors},
            )
    hung = _probe_exact(factories, args)
    for name in hung:
        factories.pop(name)
    common.log(f"compiling {len(factories)} variants in one worker...")
    worker = common.Worker(factories, env=JAX_ENV, cores=args.cores, timeout_s=3600)
    try:
        targets = [(name, worker, name) for name in factories]
        steps = {name: common.calibrate(worker, name, target_s) for name in factories}
        times = common.interleaved(targets, steps=steps, repeats=repeats)
    finally:
        worker.close()
    results = _report(dims, times, worker.info, base_dim=min(dims) if args.factors else 64)
    results["factors"] = args.factors
    results["hung"] = hung
    results["cores"] = args.cores or os.cpu_count()
    results["machine"] = info
    results["repeats"] = repeats
    name = "jacobian_cost" + (f"_{args.cores}core" if args.cores else "")
    name += "_factors" if args.factors else ""
    if args.dims or args.variants:  # a partial run must not overwrite the full one
        name += "_partial"
    path = common.save(name + ("_quick" if args.quick else ""), results)
    common.log(_markdown(results))
    common.log(f"saved {path}")


def _probe_exact(factories, args) -> dict[str, str]:
    """Exact-term variants at D > 5 can hang on this machine (XLA CPU, 2 threads: the step
    never completes and uses no CPU; see docs/performance.md). Each is first run alone for a
    few steps in a throwaway process; those that do not finish in time are left out."""
    hung = {}
    for name, (factory, kwargs) in factories.items():
        if kwargs["variant"] not in EXACT or kwargs["target_dim"] <= 5 or args.factors:
            continue
        try:
            probe = common.Worker(
                {name: (factory, kwargs | {"probe_steps": 3})},
                env=JAX_ENV,
                timeout_s=args.probe_timeout,
                cores=args.cores,
            )
            probe.close()
            common.log(f"probe {name}: ok")
        except TimeoutError as e:
            hung[name] = f"no result within {args.probe_timeout:.0f} s: {e}"
            common.log(f"probe {name}: HUNG, left out")
    return hung


def _report(dims, times, info, base_dim=64):
    rows = {}
    for dim in dims:
        plain = times.get(f"{dim}/plain")
        if plain is None:
            continue
        row = {}
        for v in VARIANTS:
            t = times.get(f"{dim}/{v}")
            if t is None:
                continue
            row[v] = {
                "ms": common.summary([1e3 * s for s in t]),
                "over_plain": common.paired_ratio(t, plain),
                "compile_s": info[f"{dim}/{v}"]["compile_s"],
                "gflops_per_step": info[f"{dim}/{v}"]["flops"] / 1e9,
                "gflop_per_s": info[f"{dim}/{v}"]["flops"] / 1e9 / common.summary(t)["median"],
            }
        rows[dim] = row
    growth = {}
    if base_dim in dims:
        for v in ("plain", "exact", "estimated", "est-lean", "est-sub32", "est-proj"):
            base = times.get(f"{base_dim}/{v}")
            if base is None:
                continue
            growth[v] = {
                dim: common.paired_ratio(times[f"{dim}/{v}"], base)
                for dim in dims
                if f"{dim}/{v}" in times
            }
    target = None
    if "estimated" in growth and 2048 in growth["estimated"]:
        r = growth["estimated"][2048]["median"]
        target = {"estimated_2048_over_64": r, "target": 4.0, "met": r <= 4.0}
    return {
        "rows": rows,
        "growth_base_dim": base_dim,
        "growth": growth,
        "target_d2048": target,
        "raw": times,
    }


def _markdown(results) -> str:
    rows = results["rows"]
    cols = [v for v in VARIANTS if any(v in r for r in rows.values())]
    lines = [
        f"ms/step median (ratio to `plain` at the same D, paired median); "
        f"{results['cores']} core(s)",
        "",
        "| D | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for dim, r in rows.items():
        cells = []
        for v in cols:
            if v not in r:
                cells.append("-")
            else:
                cells.append(f"{r[v]['ms']['median']:.1f} ({r[v]['over_plain']['median']:.1f}x)")
        lines.append(f"| {dim} | " + " | ".join(cells) + " |")
    growth, base_dim = results["growth"], results["growth_base_dim"]
    if growth:
        dims = sorted({d for g in growth.values() for d in g})
        lines += [
            "",
            f"step time relative to the same variant at D = {base_dim} (paired median [IQR])",
            "",
            "| variant | " + " | ".join(f"D={d}" for d in dims) + " |",
            "|---" * (len(dims) + 1) + "|",
        ]
        for v, g in growth.items():
            cells = [common.fmt_ratio(g[d]) if d in g else "-" for d in dims]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if results.get("hung"):
        lines += ["", "hung (left out): " + ", ".join(results["hung"])]
    t = results["target_d2048"]
    if t:
        verdict = "MET" if t["met"] else "MISSED"
        lines += [
            "",
            f"target: estimated step at D=2048 within 4x of D=64: "
            f"{t['estimated_2048_over_64']:.1f}x -> {verdict}",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
