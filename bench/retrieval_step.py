"""Does the retrieval data path stall the step? Loading time as a share of the train step at
the offline benchmark's default size, measured side by side in one process.

    .venv/bin/python bench/retrieval_step.py --method=ncr --steps=30

Variants, timed in rotated order each round:
- `resident`: the jitted step on the same placed batch (no loading: the floor);
- `loading`: `place_batch(sampler.batch(s))` then the step, as `jaxmr.train.loop` does
  (`IndexedPairSampler` gathers the captions' image rows from the memory-mapped `_ims.npy`);
- `load-only`: `place_batch(sampler.batch(s))` alone.
Prints medians per step and the load share (load-only / loading).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="ncr")
    p.add_argument("--config", default="configs/ncr_synthetic.py")
    p.add_argument("--steps", type=int, default=30, help="steps per variant per round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)

    import importlib.util

    import jax

    from jaxmr.tasks import build_task
    from jaxmr.train import mesh as mesh_lib
    from jaxmr.train import step as step_lib

    spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, args.config))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config(f"method={args.method}")
    config.num_devices = 1
    task = build_task(config)
    mesh = mesh_lib.make_data_mesh(1)
    target = step_lib.abstract_state(task, mesh)
    shardings = jax.tree.map(lambda s: s.sharding, target)
    sampler = task.make_sampler(batch_size=config.batch_size, seed=0)
    fn = step_lib.jit_train_step(task, mesh, shardings, steps_per_epoch=sampler.steps_per_epoch)
    state = step_lib.init_state(task, jax.random.key(0), mesh)
    key = jax.random.key(1)
    fixed = mesh_lib.place_batch(sampler.batch(0), mesh)
    state, m = fn(state, fixed, key)
    jax.block_until_ready(m)
    times = {"resident": [], "loading": [], "load-only": []}
    step = 1
    variants = list(times)
    for r in range(args.rounds):
        for name in variants[r % 3 :] + variants[: r % 3]:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                if name == "resident":
                    state, m = fn(state, fixed, key)
                elif name == "loading":
                    state, m = fn(state, mesh_lib.place_batch(sampler.batch(step), mesh), key)
                else:
                    m = mesh_lib.place_batch(sampler.batch(step), mesh)
                step += 1
            jax.block_until_ready(m)
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"method {args.method}, batch {config.batch_size}, {args.rounds} rounds x {args.steps}")
    print("| variant | ms/step (median) | per round |")
    print("|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {med[k]:.1f} | {' / '.join(f'{x:.1f}' for x in v)} |")
    print(
        f"load share of a loading step: {med['load-only'] / med['loading']:.1%}; "
        f"loading vs resident: {med['loading'] / med['resident']:.2f}x"
    )


if __name__ == "__main__":
    main()
