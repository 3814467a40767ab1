"""Where the DisNCL step's time goes: sub-computations of the library's jitted step (built as
`bench/disncl_step.py` builds it), each jitted alone and timed in interleaved rounds in one
process (JAX only).

    PYTHONPATH=$PWD .venv/bin/python bench/disncl_profile.py --shapes offline --repeats 7

Reports wall and CPU time (all threads) per call and minor page faults per call. The process
applies the trainer's host allocator policy first (`--allocator`, default "keep";
jaxmr.train.host_memory). `taskset -c 0` (one core) makes the CPU time the work of one thread.

Parts (each a jitted function of the step's state and batch; "f" forward only, "fb" forward and
backward):
  step       the whole step (two encoder phases, the estimator phase, as `jit_train_step`)
  phase_a    one encoder phase (net_a) as a one-phase step: forward, backward, Adam update
  grad_a     value_and_grad of net_a's loss (no update)
  loss_a     net_a's loss alone (forward)
  text_fb / text_f    net_a's text encoder (Bi-GRU), the pooled code against a fixed cotangent
  image_fb / image_f  net_a's region encoder, the same
  est        the estimator phase as a one-phase step
  adam_a     net_a's optimiser update on fixed gradients
`--parts` picks some (comma-separated).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time

import numpy as np

PARTS = (
    "step",
    "phase_a",
    "grad_a",
    "loss_a",
    "text_fb",
    "text_f",
    "image_fb",
    "image_f",
    "est",
    "adam_a",
)


def build(shape: str):
    import disncl_step
    import jax

    from jaxmr.tasks.retrieval.task import build_retrieval
    from jaxmr.train import mesh as mesh_lib
    from jaxmr.train import step as step_lib

    config = disncl_step.shape_config(shape)
    if shape == "offline":
        from jaxmr.data.retrieval import load_retrieval_data

        data = load_retrieval_data(config.data)
    else:
        data = disncl_step.synthetic_data(shape, config.batch_size)
    task = build_retrieval(config, data=data)
    mesh = mesh_lib.make_data_mesh(1)
    state = step_lib.init_state(task, jax.random.key(config.seed), mesh)
    host = task.make_sampler(batch_size=config.batch_size, seed=config.seed).batch(0)
    rng = np.random.default_rng(1)
    for net in task.info["nets"]:
        host[f"clean_prob_{net}"] = rng.uniform(0, 1, host["lengths"].shape).astype(np.float32)
    batch = mesh_lib.place_batch(host, mesh)
    return config, data, task, state, batch


def parts(config, data, task, state, batch) -> dict:
    """{name: (jitted fn, args)}."""
    import jax
    import jax.numpy as jnp

    from jaxmr.tasks.retrieval.nets import Nets
    from jaxmr.train import step as step_lib

    key = jax.random.key(1)
    out = {}
    phases = {p.name: p for p in task.phases}
    one = lambda name: dataclasses.replace(task, phases=(phases[name],))
    out["step"] = (jax.jit(step_lib.make_train_step(task)), (state, batch, key))
    out["phase_a"] = (jax.jit(step_lib.make_train_step(one("net_a"))), (state, batch, key))
    out["est"] = (jax.jit(step_lib.make_train_step(one("est"))), (state, batch, key))
    from jaxmr.train.task import StepContext

    def loss_a(p, batch, key):
        ctx = StepContext(step=state.step, epoch=state.step, key=key, carry=state.carry)
        params = {**state.params, "net_a": p}
        return phases["net_a"].loss_fn(params, batch, ctx)

    pa = state.params["net_a"]
    out["grad_a"] = (jax.jit(jax.value_and_grad(loss_a, has_aux=True)), (pa, batch, key))
    out["loss_a"] = (jax.jit(loss_a), (pa, batch, key))
    m = config.model
    nets = Nets(m, data.train.images.shape[-1], data.vocab_size, ("net_a",), disentangled=True)
    ct = jax.random.normal(jax.random.key(2), (batch["lengths"].shape[0], int(m.embed_dim)))

    def text(p, batch):
        h = nets.bind({"net_a": p}, "net_a").text(batch["tokens"], batch["lengths"])
        return jnp.sum(h * ct)

    def image(p, batch):
        return jnp.sum(nets.bind({"net_a": p}, "net_a").image(batch["images"]) * ct)

    out["text_fb"] = (jax.jit(jax.grad(text)), (pa, batch))
    out["text_f"] = (jax.jit(text), (pa, batch))
    out["image_fb"] = (jax.jit(jax.grad(image)), (pa, batch))
    out["image_f"] = (jax.jit(image), (pa, batch))
    grads = jax.tree.map(lambda a: 1e-3 * jnp.ones_like(a), pa)
    opt = task.optimizers["net_a"]

    def adam(g, s, p):
        import optax

        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    out["adam_a"] = (jax.jit(adam), (grads, state.opt_state["net_a"], pa))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="offline")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--target-s", type=float, default=0.5)
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--allocator", default="keep", help="host allocator policy, as the trainer's")
    ap.add_argument("--late", action="store_true", help="apply it after building the task")
    args = ap.parse_args(argv)
    from jaxmr.train.host_memory import configure_host_allocator

    if not args.late:
        configure_host_allocator(args.allocator)
    import jax

    config, data, task, state, batch = build(args.shapes)
    if args.late:  # as jaxmr.train.loop does: after the task is built, before the step
        configure_host_allocator(args.allocator)
    fns = parts(config, data, task, state, batch)
    names = [p for p in args.parts.split(",") if p]
    compiled, steps = {}, {}
    for n in names:
        fn, a = fns[n]
        t0 = time.perf_counter()
        compiled[n] = (fn.lower(*a).compile(), a)
        jax.block_until_ready(compiled[n][0](*a))
        t = time.perf_counter()
        jax.block_until_ready(compiled[n][0](*a))
        dt = time.perf_counter() - t
        steps[n] = max(1, round(args.target_s / max(dt, 1e-5)))
        print(f"{n}: compile {t - t0:.1f} s, {steps[n]} calls per timing", flush=True)
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    faults = {n: [] for n in names}
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            f, a = compiled[n]
            time.sleep(0.05)
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps[n]):
                res = f(*a)
            jax.block_until_ready(res)
            times[n].append((time.perf_counter() - t0) / steps[n] * 1e3)
            cpu[n].append((time.process_time() - c0) / steps[n] * 1e3)
            faults[n].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps[n])
        print(f"round {r + 1}: " + " ".join(f"{n} {times[n][-1]:.2f}" for n in names), flush=True)
    print(f"\ncores: {len(os.sched_getaffinity(0))}")
    print(
        "| part | wall ms median [IQR] | CPU ms (all threads) median [IQR] | page faults |\n"
        "|---|---|---|---|"
    )
    for n in names:
        q, c = np.percentile(times[n], [25, 50, 75]), np.percentile(cpu[n], [25, 50, 75])
        print(
            f"| {n} | {q[1]:.2f} [{q[0]:.2f}-{q[2]:.2f}] | {c[1]:.2f} [{c[0]:.2f}-{c[2]:.2f}] "
            f"| {np.median(faults[n]):.0f} |"
        )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
