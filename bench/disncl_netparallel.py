"""Net-parallel DisNCL encoder phases: feasibility timing.

DisNCL's step trains two co-trained networks in two encoder phases that are independent of
each other (net_a's loss reads net_a's parameters, the estimators' (not updated there) and the
batch; each writes its own carried codes). XLA:CPU runs one program's independent loops one
after the other, but a host split into 2 devices (`--xla_force_host_platform_device_count=2`)
runs the two devices' programs at the same time. This script times, at the offline shapes
(`bench/disncl_step.py`'s `shape_config("offline")`), in one process with 2 host devices:

  seq  the two encoder phases one after the other on one device (as `jaxmr.train.step`);
  par  the same two phases at once: `shard_map` over a 2-device mesh axis `net`, state and
       batch replicated, each device running its own phase (`lax.switch` on the device
       index; `jaxmr.train.step.run_phase` with the phase's own key, as the step); the
       updated state and logged values packed into one buffer per dtype and all-gathered
       once at the end, so the state leaves replicated, as the trainer keeps it;
  par-one  (`--one`, a diagnostic) the par program with only net_a's phase at work.

Both are checked allclose (losses, updated parameters, carried codes), then timed in
interleaved rounds (median per-round ratio).

    PYTHONPATH=$PWD nice -n -5 .venv/bin/python bench/disncl_netparallel.py
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
).strip()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import common  # noqa: E402
import numpy as np  # noqa: E402


def parallel_phases(
    phases, optimizers, params, opt_state, carry, batch, keys, *, step, epoch, mesh, axis, one=False
):
    """Runs `phases` (each with its phase key in `keys`) at once over `mesh`'s `axis` (size
    len(phases)); returns updated copies of (params, opt_state, carry) and the measurements, as
    `jaxmr.train.step.run_phase` run for each phase in turn would. `one` (a diagnostic, its
    results wrong): only the first device works (the first phase), the others return zeros."""

    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec as P

    from jaxmr.train.step import run_phase

    n = len(phases)
    if mesh.shape[axis] != n:
        raise ValueError(f"{n} parallel phases need mesh axis {axis!r} of size {n}")
    mine = [tuple(p.groups) for p in phases]
    owned = [tuple(p.carries) for p in phases]
    all_groups = {g for gs in mine for g in gs}
    all_carries = {c for cs in owned for c in cs}

    def branch(k):
        phase = phases[k]

        def f(params, opt_state, carry, keys, batch, step, epoch):
            # The groups and carried entries of the other phases of the set are not visible.
            p = {g: v for g, v in params.items() if g in mine[k] or g not in all_groups}
            o = {g: opt_state[g] for g in mine[k]}
            c = {e: v for e, v in carry.items() if e in owned[k] or e not in all_carries}
            m = run_phase(phase, optimizers, p, o, c, batch, keys[k], step=step, epoch=epoch)
            pre = f"{phase.name}/"
            meas = {name[len(pre) :]: v for name, v in m.items()}
            return [p[g] for g in mine[k]], [o[g] for g in mine[k]], [c[e] for e in owned[k]], meas

        return f

    args = (
        params,
        opt_state,
        carry,
        list(keys),
        dict(batch),
        jnp.asarray(step),
        jnp.asarray(epoch),
    )
    shapes = [jax.eval_shape(branch(k), *args) for k in range(n)]
    if len({jax.tree.structure(s) for s in shapes}) != 1 or any(
        jax.tree.leaves(s) != jax.tree.leaves(shapes[0]) for s in shapes
    ):
        raise ValueError(
            f"parallel phases {[p.name for p in phases]} differ in the structure of their "
            "parameters, optimiser states, carried entries or logged values"
        )
    treedef = jax.tree.structure(shapes[0])
    leaves0 = jax.tree.leaves(shapes[0])
    dtypes = sorted({jnp.dtype(x.dtype).name for x in leaves0})

    def flat(out):
        # One buffer per dtype: the updated state leaves as ONE collective per dtype at the
        # end (one per leaf costs a rendezvous each, milliseconds on a loaded host).
        leaves = jax.tree.leaves(out)
        return [
            jnp.concatenate([jnp.ravel(x) for x in leaves if x.dtype == d] or [jnp.zeros(0, d)])
            for d in dtypes
        ]

    def idle(*a):
        return [jnp.zeros(x.shape, x.dtype) for x in flat(branch(0)(*a))]  # DCE'd: idle

    def body(*a):
        fns = [lambda *a, k=k: flat(branch(k)(*a)) for k in range(n)]
        if one:
            fns = fns[:1] + [idle] * (n - 1)
        out = jax.lax.switch(jax.lax.axis_index(axis), fns, *a)
        # Gathered here, inside: one all-gather per dtype (left to the partitioner, each
        # leaf sliced from a sharded buffer became an all-reduce of the whole buffer).
        return [jax.lax.all_gather(x, axis) for x in out]

    bufs = jax.shard_map(body, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False)(*args)

    def unflat(k):
        offs = dict.fromkeys(dtypes, 0)
        leaves = []
        for x in leaves0:
            d = jnp.dtype(x.dtype).name
            size = int(np.prod(x.shape))
            buf = bufs[dtypes.index(d)][k]
            leaves.append(buf[offs[d] : offs[d] + size].reshape(x.shape))
            offs[d] += size
        return jax.tree.unflatten(treedef, leaves)

    params, opt_state, carry = dict(params), dict(opt_state), dict(carry)
    measurements = {}
    for k, phase in enumerate(phases):
        new_own, new_opt, new_c, meas = unflat(k)
        for j, g in enumerate(mine[k]):
            params[g] = new_own[j]
            opt_state[g] = new_opt[j]
        for j, c in enumerate(owned[k]):
            carry[c] = new_c[j]
        measurements.update({f"{phase.name}/{m}": v for m, v in meas.items()})
    return params, opt_state, carry, measurements


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="steps per timing")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--one",
        action="store_true",
        help="also time par-one: the par program with only net_a's phase at work (device 1 "
        "idle; a diagnostic, its results unchecked)",
    )
    args = ap.parse_args(argv)

    import jax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from disncl_step import ROOT_KEY, shape_config

    from jaxmr.data.retrieval import load_retrieval_data
    from jaxmr.tasks.retrieval.task import build_retrieval
    from jaxmr.train import mesh as mesh_lib
    from jaxmr.train import step as step_lib
    from jaxmr.train.host_memory import configure_host_allocator

    config = shape_config("offline")
    configure_host_allocator(config.host_allocator)
    data = load_retrieval_data(config.data)
    task = build_retrieval(config, data=data)
    enc = tuple(task.phases[:2])
    print("phases:", [p.name for p in enc], "devices:", jax.devices(), flush=True)
    task_seq = dataclasses.replace(task, phases=enc)

    mesh1 = mesh_lib.make_data_mesh(1)
    state = step_lib.init_state(task, jax.random.key(config.seed), mesh1)
    sampler = task.make_sampler(batch_size=config.batch_size, seed=config.seed)
    host = sampler.batch(0)
    rng = np.random.default_rng(1)
    for net in task.info["nets"]:
        host[f"clean_prob_{net}"] = rng.uniform(0, 1, host["lengths"].shape).astype(np.float32)
    key = jax.random.key(ROOT_KEY)

    # (a) sequential, one device
    seq_step = jax.jit(step_lib.make_train_step(task_seq))
    batch1 = mesh_lib.place_batch(host, mesh1)

    # (b) net-parallel, two devices, state replicated in and out
    mesh2 = Mesh(np.asarray(jax.devices()[:2]), ("net",))
    rep2 = NamedSharding(mesh2, P())
    state2 = jax.device_put(jax.device_get(state), rep2)
    batch2 = jax.device_put(host, rep2)

    def par_fn(state, batch, root_key, one=False):
        k = jax.random.fold_in(root_key, state.step)
        keys = [jax.random.fold_in(k, i) for i in range(len(enc))]
        params, opt_state, carry, meas = parallel_phases(
            enc,
            task.optimizers,
            dict(state.params),
            dict(state.opt_state),
            dict(state.carry),
            batch,
            keys,
            step=state.step,
            epoch=state.step,  # steps_per_epoch 1, as the sequential step here
            mesh=mesh2,
            axis="net",
            one=one,
        )
        meas.update(step_lib.learning_rates(task_seq, opt_state))
        new = step_lib.TrainState(
            step=state.step + 1, params=params, opt_state=opt_state, carry=carry
        )
        return new, meas

    par_step = jax.jit(par_fn, out_shardings=rep2)

    t0 = time.perf_counter()
    seq_c = seq_step.lower(state, batch1, key).compile()
    t1 = time.perf_counter()
    par_c = par_step.lower(state2, batch2, key).compile()
    t2 = time.perf_counter()
    print(f"compile: seq {t1 - t0:.1f} s, par {t2 - t1:.1f} s", flush=True)
    if args.one:
        one_c = jax.jit(lambda s, b, k: par_fn(s, b, k, one=True), out_shardings=rep2)
        one_c = one_c.lower(state2, batch2, key).compile()

    # check: two steps each from the same state
    s_a, s_b = state, state2
    worst = {}
    for i in range(2):
        s_a, m_a = seq_c(s_a, batch1, key)
        s_b, m_b = par_c(s_b, batch2, key)
        m_a, m_b = jax.device_get((m_a, m_b))
        for k in m_a:
            d = abs(float(m_a[k]) - float(m_b[k])) / max(abs(float(m_a[k])), 1e-6)
            worst[f"step{i}:{k}"] = d
        if i == 0:
            print({k: (float(m_a[k]), float(m_b[k])) for k in m_a if k.endswith("/loss")})
    pa, pb = jax.device_get((s_a.params, s_b.params))
    ca, cb = jax.device_get((s_a.carry, s_b.carry))
    leaves = jax.tree.leaves(
        jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), (pa, ca), (pb, cb))
    )
    print(
        f"check: max |param/carry diff| after 2 steps = {max(leaves):.3g}; "
        f"max rel measurement diff = {max(worst.values()):.3g}",
        flush=True,
    )
    np.testing.assert_allclose(
        np.concatenate([np.ravel(x) for x in jax.tree.leaves((pa, ca))]),
        np.concatenate([np.ravel(x) for x in jax.tree.leaves((pb, cb))]),
        rtol=1e-4,
        atol=1e-5,
    )

    def timer(name, fn, st, b):
        box = [st]

        def run(n):
            import resource

            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t = time.perf_counter()
            s = box[0]
            for _ in range(n):
                s, m = fn(s, b, key)
            jax.block_until_ready((s, m))
            box[0] = s
            wall = time.perf_counter() - t
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            busy.setdefault(name, []).append(round(cpu / wall, 2))
            return wall / n * 1e3

        return run

    busy = {}
    runs = {"seq": timer("seq", seq_c, s_a, batch1), "par": timer("par", par_c, s_b, batch2)}
    if args.one:
        runs["par-one"] = timer("par-one", one_c, s_b, batch2)
    for r in runs.values():
        r(3)
    busy.clear()
    times = {k: [] for k in runs}
    order = list(runs)
    for r in range(args.rounds):
        for k in order:
            times[k].append(runs[k](args.steps))
        order = order[1:] + order[:1]
        print(
            f"round {r}: " + ", ".join(f"{k} {v[-1]:.1f} ms" for k, v in times.items()), flush=True
        )
    print("cores busy (cpu/wall) per timing:", busy)
    ratios = [a / b for a, b in zip(times["seq"], times["par"], strict=True)]
    out = {
        **{f"{k}_ms": float(np.median(v)) for k, v in times.items()},
        "ratio_median": float(np.median(ratios)),
        "ratio_iqr": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))],
        "times": times,
        "cores_busy": busy,
        "load": os.getloadavg(),
        "machine": common.machine(),
    }
    print(json.dumps({k: v for k, v in out.items() if k not in ("times", "machine")}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    main()
