"""Shared pieces of the benchmarks: configs, the library's jitted iIVAE step, worker processes
and interleaved timing.

Why worker processes: JAX and PyTorch each own a thread pool sized to the machine. Timing them
in one interpreter would let one pool's spinning threads steal cycles from the other, so each
implementation lives in its own process and a controller asks them for timings in turn
(alternating the order every repetition). The ratio of medians taken side by side in one run
is robust to the other work sharing this machine; an absolute steps/s is not.

Nothing heavy is imported at module level: a worker process must be able to set
`XLA_FLAGS`/thread counts before JAX or torch start.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "bench", "out")

# Recipe1M at feature level: ResNet-50 pooled image features (2,048) as the target modality
# embedded by the flow, the repo's MiniLM-L6 text tower's mean-pooled features (384) as the
# query. The latent dimension is a modelling choice; 16 is used here.
RECIPE_FEATURES = dict(target_dim=2048, query_dim=384, latent_dim=16)


# --------------------------------------------------------------------------- configs / data


def synthetic_features(
    path: str, *, num_examples: int, target_dim: int, query_dim: int, latent_dim: int, seed=0
):
    """Writes a paired `.npz` (u: query, x: target, s: factors) with the given shapes.

    Values only need to be realistic in scale for a timing (the synthetic generator's
    conditioning search over 10^4 random D x D matrices is unaffordable at D = 2,048).
    """
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((num_examples, latent_dim)).astype(np.float32)
    mix = rng.standard_normal((latent_dim, target_dim)).astype(np.float32) / np.sqrt(latent_dim)
    y = np.tanh(s @ mix) + 0.1 * rng.standard_normal((num_examples, target_dim))
    seg = rng.standard_normal((40, query_dim)).astype(np.float32)
    u = seg[rng.integers(0, 40, num_examples)] + 0.1 * rng.standard_normal(
        (num_examples, query_dim)
    )
    np.savez(path, u=u.astype(np.float32), x=y.astype(np.float32), s=s)
    return path


def ivae_config(
    *,
    target_dim: int | None = None,
    query_dim: int = 20,
    latent_dim: int = 5,
    logdet: str = "exact",
    spectral: str = "exact",
    batch_size: int = 256,
    num_examples: int = 8192,
    data_dir: str | None = None,
    factors: int | None = None,
):
    """The default config (`configs/ivae_synthetic.py`), with the target dimension, query
    dimension, latent dimension and Jacobian estimators overridden.

    `target_dim=None` keeps the embedded synthetic generator (the default job's data);
    otherwise the data come from a feature file of the requested shape. `factors=d` is the
    default job on d-factor data: the synthetic generator with d = D = `factors` (overrides
    `latent_dim`; `target_dim` must be None).
    """
    if factors is not None:
        if target_dim is not None:
            raise ValueError("ivae_config: give factors= or target_dim=, not both")
        latent_dim = factors
    sys.path.insert(0, REPO)
    from configs import ivae_synthetic

    config = ivae_synthetic.get_config()
    config.batch_size = batch_size
    config.num_devices = 1
    config.evals.mcc.every_steps = -1  # no evaluator data held by the task
    config.evals.traversal.every_steps = -1
    config.loss.logdet = logdet
    config.loss.spectral = spectral
    config.model.latent_dim = latent_dim
    # D > d: measure the full-dimensional flow on R^D (docs/methods.md §1 candidate (i)), not a
    # projection of the targets onto d directions, where the config has that choice.
    if "target_projection" in config.model:
        config.model.target_projection = "none"
    if "target_mode" in config.model:
        config.model.target_mode = "full"
    if factors is not None:
        config.data.latent_dim = config.data.target_dim = factors
    if target_dim is not None:
        data_dir = data_dir or tempfile.mkdtemp(prefix="jaxmr_bench_")
        path = os.path.join(data_dir, f"features_{target_dim}_{query_dim}_{latent_dim}.npz")
        if not os.path.exists(path):
            synthetic_features(
                path,
                num_examples=num_examples,
                target_dim=target_dim,
                query_dim=query_dim,
                latent_dim=latent_dim,
            )
        config.data.path = path
        config.data.latent_dim = latent_dim
        config.data.target_dim = target_dim
        config.data.query_dim = query_dim
    return config


def apply_overrides(config, overrides: dict | None):
    """Sets dotted fields (`"model.flow.hidden": (16,)`) of a config in place; returns it."""
    for key, value in (overrides or {}).items():
        *path, field = key.split(".")
        node = config
        for p in path:
            node = node[p]
        node[field] = value
    return config


def config_shapes(config) -> dict[str, Any]:
    """The numbers that define the model's cost, for tables and for the PyTorch peer."""
    m, loss = config.model, config.loss
    return dict(
        batch_size=int(config.batch_size),
        latent_dim=int(m.latent_dim),
        flow_blocks=int(m.flow.num_blocks),
        flow_hidden=tuple(m.flow.hidden),
        flow_activation=m.flow.activation,
        flow_affine=bool(m.flow.affine),
        flow_init_scale=float(m.flow.init_scale),
        prior_hidden=tuple(m.prior.hidden),
        prior_activation=m.prior.activation,
        prior_mean=m.prior.mean,
        beta=float(loss.beta),
        gamma=float(loss.gamma),
        lipschitz_bound=float(loss.lipschitz_bound),
        logdet=loss.logdet,
        spectral=loss.spectral,
        power_iters=int(loss.power_iters),
        series_terms=int(loss.series_terms),
        probes=int(loss.probes),
        learning_rate=float(config.optim.learning_rate),
        b1=float(config.optim.b1),
        b2=float(config.optim.b2),
    )


# --------------------------------------------------------------------------- JAX step


class JaxStep:
    """The library's jitted, sharded iIVAE train step on a fixed batch.

    Built exactly as `jaxmr.train.loop` builds it: `TASKS["ivae"](config)`, a data mesh,
    `init_state`, `jit_train_step` (donated state, batch sharded over `data`).
    """

    def __init__(self, config, *, num_devices: int = 1, loss_fn=None):
        import jax

        from jaxmr.data.arrays import ArrayLoader
        from jaxmr.tasks import TASKS
        from jaxmr.train import mesh as mesh_lib
        from jaxmr.train import step as step_lib
        from jaxmr.train.task import Phase

        self.jax = jax
        self.make_step = step_lib.make_train_step
        task = TASKS[config.task](config)
        if loss_fn is not None:  # a bench-local objective on the same model (cost floors)
            task.phases = (Phase("train", ("model",), loss_fn(task, config)),)
        self.task, self.config = task, config
        self.mesh = mesh_lib.make_data_mesh(num_devices)
        target = step_lib.abstract_state(task, self.mesh)
        shardings = jax.tree.map(lambda s: s.sharding, target)
        self.state = step_lib.init_state(task, jax.random.key(config.seed), self.mesh)
        self.step_fn = step_lib.jit_train_step(task, self.mesh, shardings)
        # As in `jaxmr.train.loop`: every training array travels with the batch.
        self.loader = ArrayLoader(task.train_arrays, batch_size=config.batch_size, seed=config.seed)
        self.key = jax.random.key(1)
        self.batch = mesh_lib.place_batch(self.loader.batch(0), self.mesh)
        self.place_batch = lambda b: mesh_lib.place_batch(b, self.mesh)
        self.compile_s = None
        self.measurements = None

    def compile(self, *, warm: bool = True) -> float:
        """Lowers and compiles (timed); runs one step unless `warm=False` (which leaves the
        state at its initial value). Later runs call the compiled executable."""
        t0 = time.perf_counter()
        self.compiled = self.step_fn.lower(self.state, self.batch, self.key).compile()
        self.compile_s = time.perf_counter() - t0
        self.step_fn = self.compiled
        if warm:
            self.run(1)
        return self.compile_s

    def flops(self) -> float | None:
        """XLA's own FLOP count of the compiled step (see `docs/performance.md` for what it
        leaves out: LAPACK custom calls, and loop bodies are counted once)."""
        cost = self.compiled.cost_analysis()
        if isinstance(cost, list):
            cost = cost[0]
        return float(cost.get("flops", float("nan"))) if cost else None

    def run(self, n: int) -> float:
        """n steps on the device-resident batch; seconds until the last result is ready."""
        t0 = time.perf_counter()
        state, m = self.state, None
        for _ in range(n):
            state, m = self.step_fn(state, self.batch, self.key)
        self.jax.block_until_ready((state, m))
        self.state, self.measurements = state, m
        return time.perf_counter() - t0

    def run_loading(self, n: int, start: int = 0) -> float:
        """n steps with host loading and placement each step, as `jaxmr.train.loop` does."""
        t0 = time.perf_counter()
        state, m = self.state, None
        for s in range(start, start + n):
            batch = self.place_batch(self.loader.batch(s))
            state, m = self.step_fn(state, batch, self.key)
        self.jax.block_until_ready((state, m))
        self.state, self.measurements = state, m
        return time.perf_counter() - t0

    def jaxpr_flops(self) -> dict[str, float]:
        """FLOPs of one step counted on its jaxpr (see `jaxpr_flops`)."""
        return jaxpr_flops(self.make_step(self.task), self.state, self.batch, self.key)

    def loss(self) -> float:
        return float(self.measurements["train/loss"])


def jaxpr_flops(fn, *args) -> dict[str, float]:
    """FLOPs of `fn(*args)` counted on its jaxpr: matmuls (`dot_general`) exactly, with `scan`
    bodies (fixed-trip `fori_loop`s) multiplied by their length; LU and eigh by textbook counts
    ((2/3) n^3 and 9 n^3 per matrix). Element-wise work is not counted.

    XLA's `cost_analysis()` counts a loop body once and LAPACK calls not at all, which at
    D = 2,048 under-counts the estimators' power iterations and series by the loop lengths.
    """
    import jax

    totals = {"matmul": 0.0, "lu": 0.0, "eigh": 0.0, "while_bodies_counted_once": 0.0}

    def walk(jaxpr, mult):
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            if name == "dot_general":
                (lc, _), _ = eqn.params["dimension_numbers"]
                a = eqn.invars[0].aval.shape
                out = np.prod(eqn.outvars[0].aval.shape)
                contract = np.prod([a[i] for i in lc]) if lc else 1
                totals["matmul"] += mult * 2.0 * float(out) * float(contract)
                continue
            if name == "lu":
                shape = eqn.invars[0].aval.shape
                n = shape[-1]
                totals["lu"] += mult * float(np.prod(shape[:-2])) * (2.0 / 3.0) * n**3
            elif name == "eigh":
                shape = eqn.invars[0].aval.shape
                n = shape[-1]
                totals["eigh"] += mult * float(np.prod(shape[:-2])) * 9.0 * n**3
            inner = mult * (eqn.params["length"] if name == "scan" else 1)
            if name == "while":
                totals["while_bodies_counted_once"] += 1
            for v in eqn.params.values():
                for sub in v if isinstance(v, list | tuple) else (v,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        walk(sub.jaxpr, inner)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        walk(sub, inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr, 1)
    totals["total"] = totals["matmul"] + totals["lu"] + totals["eigh"]
    return totals


# --------------------------------------------------------------------------- workers


def _serve(conn, factories: dict[str, tuple[Callable, dict]], env: dict[str, str], cores=None):
    """Worker main loop: build every runner, then answer ("run", name, n) with seconds."""
    os.environ.update(env)
    if cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    runners, info = {}, {}
    for name, (factory, kwargs) in factories.items():
        try:
            runners[name] = factory(**kwargs)
            info[name] = getattr(runners[name], "info", {})
        except Exception as e:  # reported to the controller, which decides
            conn.send(("error", name, f"{type(e).__name__}: {e}"))
            conn.close()
            return
    conn.send(("ready", info))
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            break
        if msg[0] == "run":
            _, name, n = msg
            conn.send(("time", runners[name].run(n)))
        elif msg[0] == "call":  # ("call", name, method, args)
            _, name, method, args = msg
            conn.send(("value", getattr(runners[name], method)(*args)))
    conn.close()


class Worker:
    """A process holding named runners (objects with `run(n) -> seconds` and an `info`
    dict). `env` is applied before any runner is built (thread counts, XLA flags)."""

    def __init__(
        self,
        factories: dict[str, tuple[Callable, dict]],
        env: dict | None = None,
        *,
        timeout_s: float | None = None,
        cores: int | None = None,
        wait: bool = True,
    ):
        """`timeout_s`: give up (and kill the process) if the runners are not built by then.
        `cores`: pin the process to that many cores before JAX/torch start (the thread pools
        size themselves from the affinity mask). `wait=False`: return at once and call
        `wait()` later (several workers then build their runners at the same time)."""
        ctx = mp.get_context("spawn")
        self.timeout_s = timeout_s
        self.conn, child = ctx.Pipe()
        old = dict(os.environ)
        os.environ.update(env or {})  # inherited by the spawned interpreter at start-up
        try:
            self.proc = ctx.Process(target=_serve, args=(child, factories, env or {}, cores))
            self.proc.start()
        finally:
            os.environ.clear()
            os.environ.update(old)
        self.names = list(factories)
        if wait:
            self.wait()

    def wait(self) -> None:
        """Blocks until every runner is built (their `info` dicts are then in `self.info`)."""
        msg = self._recv(self.timeout_s)
        if msg[0] == "error":
            self.proc.join()
            raise RuntimeError(f"worker runner {msg[1]!r} failed: {msg[2]}")
        self.info = msg[1]

    def _recv(self, timeout_s: float | None):
        if timeout_s is not None and not self.conn.poll(timeout_s):
            self.proc.kill()  # our own child; it is hung (see docs/performance.md)
            self.proc.join()
            raise TimeoutError(f"worker gave no answer within {timeout_s:.0f} s")
        return self.conn.recv()

    def run(self, name: str, n: int, timeout_s: float | None = None) -> float:
        self.conn.send(("run", name, n))
        return self._recv(timeout_s)[1]

    def call(self, name: str, method: str, *args):
        self.conn.send(("call", name, method, args))
        return self._recv(None)[1]

    def close(self):
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=30)


def interleaved(
    targets: Sequence[tuple[str, Worker, str]],
    *,
    steps: dict[str, int],
    repeats: int,
    gap_s: float = 0.05,
    log: Callable[[str], None] | None = None,
    timeout_s: float | None = 600.0,
) -> dict[str, list[float]]:
    """Seconds per step of each (label, worker, runner), measured in turn `repeats` times.

    The order rotates every repetition so no target always runs right after another.
    A short pause before each timing lets the previous target's idle threads go to sleep.
    """
    per_step = {label: [] for label, _, _ in targets}
    for r in range(repeats):
        k = r % len(targets)
        for label, worker, name in list(targets[k:]) + list(targets[:k]):
            time.sleep(gap_s)
            n = steps[label]
            per_step[label].append(worker.run(name, n, timeout_s) / n)
        if log:
            log(
                f"  rep {r + 1}/{repeats}: "
                + "  ".join(f"{lab} {1e3 * v[-1]:.2f} ms" for lab, v in per_step.items())
            )
    return per_step


def calibrate(worker: Worker, name: str, target_s: float, max_steps: int = 10_000) -> int:
    """Steps per timing so that one timing takes about `target_s` seconds."""
    t = worker.run(name, 2) / 2
    return int(min(max_steps, max(1, round(target_s / max(t, 1e-6)))))


# --------------------------------------------------------------------------- statistics


def summary(samples: Sequence[float]) -> dict[str, float]:
    q = np.percentile(samples, [25, 50, 75])
    return dict(median=float(q[1]), q25=float(q[0]), q75=float(q[2]), n=len(samples))


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> dict[str, float]:
    """Median and quartiles of num[i] / den[i] over repetitions timed side by side."""
    return summary([a / b for a, b in zip(num, den, strict=True)])


def fmt_ratio(r: dict[str, float]) -> str:
    return f"{r['median']:.2f}x [{r['q25']:.2f}-{r['q75']:.2f}]"


def fmt_ms(samples: Sequence[float]) -> str:
    s = summary(samples)
    return f"{1e3 * s['median']:.2f} [{1e3 * s['q25']:.2f}-{1e3 * s['q75']:.2f}]"


def provenance() -> dict[str, Any]:
    """The commit measured, and the library files that differed from it at the time (other
    work shares this tree: a number belongs to the code that was there when it was taken)."""

    def git(*args):
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return out.stdout

    status = git("status", "--porcelain", "--", "jaxmr", "configs")
    dirty = [ln[3:] for ln in status.splitlines() if ln.strip()]
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "dirty_library_files": dirty,
        "diff_sha1": git("diff", "HEAD", "--", "jaxmr", "configs")
        and __import__("hashlib")
        .sha1(git("diff", "HEAD", "--", "jaxmr", "configs").encode())
        .hexdigest()[:12],
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    versions = {}
    for mod in ("jax", "jaxlib", "flax", "optax", "torch", "numpy"):
        try:
            out = subprocess.run(
                [sys.executable, "-c", f"import {mod}; print({mod}.__version__)"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            versions[mod] = out.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            versions[mod] = None
    return dict(
        code=provenance(),
        cpu=cpu,
        cores=os.cpu_count(),
        python=platform.python_version(),
        loadavg_at_start=load,
        **versions,
    )


def save(name: str, payload: dict) -> str:
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    return path


def log(msg: str) -> None:
    print(msg, flush=True)
