"""DisNCL train-step throughput: the library's jitted JAX step against a PyTorch peer of the same
two co-trained networks, loss terms and CLUB estimator step (`bench/torch_disncl.py`), eager and
`torch.compile`d, timed in interleaved rounds.

    TV=/tmp/tv-dperf/lib/python3.11/site-packages   # torch 2.13.0+cpu (bench/README.md)
    PYTHONPATH=$PWD:$TV .venv/bin/python bench/disncl_step.py   # paper, then offline shapes
    python bench/disncl_step.py --json OUT.json --dry-run   # tiny shapes, CPU (accelerator.sh)

Shapes (the JAX step is `build_task(config)` + `jit_train_step`, as `jaxmr.train.loop` builds
it; the clean probabilities are in use, i.e. past the warm-up):
- `offline`: `configs/disncl_synthetic.py` as it is, on the scenes benchmark (batch 128, 36
  regions x 128 features, 128-d backbone, 128-d word vectors, 64-d MII/MEI codes, captions
  padded to the longest of the benchmark);
- `paper`: `configs/disncl_f30k.py` (batch 128, 36 x 2,048 region features, 300-d word
  vectors, Bi-GRU 1,024, 256-d MII/MEI codes, F30K's 8,481-word vocabulary) on synthetic
  arrays of those shapes: 128 images x 5 captions, caption lengths (with <start>/<end>) drawn
  from round(N(14, 4)) clipped to [6, 40];
- `tiny` (`--dry-run`): the paper's layout at toy widths, seconds on CPU.
Both implementations see the same batch; the peer packs the captions (`pack_padded_sequence`,
its GRU stops at each caption's end) where the JAX GRU (`jaxmr.models.gru`) runs every caption
of the batch to the batch's longest, masked.

Variants: `jax` (the library's step: encoder phases, then the estimator phase on the codes they
carry), `jax-est-first` (`--jax-variants est-first`: the estimator phase first, computing the
networks' codes itself, as the library did before the codes were carried: the forward pass
twice per step), `jax-flax-gru` (`--jax-variants flax-gru`: the library's step with the
reference Bi-GRU, two `nnx.RNN(GRUCell)`s stepped over the padded length, as before the fused
GRU), `jax-system-alloc` (`--jax-variants system-alloc`: the library's step in a process that
keeps the C library's allocator defaults, `host_allocator="system"`, as before the trainer kept
freed step memory; jaxmr.train.host_memory), `jax-devices2` (`--jax-variants devices2`: the
library's step sharded over the batch in a process whose host is split into 2 CPU devices,
as the trainer shards it over every device it sees; 1.30x slower than one device at the
offline shapes, docs/performance.md), `torch-<threads>t` (eager) and
`torch-<threads>t-compile-<mode>` (the forward pass and losses under `torch.compile`, backward
by AOTAutograd, Adam eager). The JAX step is compiled too (XLA): compile times are reported
apart. `--peer-allocator keep` runs the PyTorch peers' processes under the same allocator
policy as the library's step (default `system`: the C library's defaults, as the field runs).

Loss check (every run, when torch is importable): the peer starts from the JAX step's initial
parameters and batch, with CLUB-sample's permutations taken from the JAX step's keys; every
logged term of both networks and the estimator at step 0 (same weights) and step 1 (after one
update of each) is compared. Timing: each implementation in its own process, the controller
asks each for a timing of ~`--target-s` seconds in turn, rotating the order each round; medians
[IQR] and the median of the per-round ratios (`bench/common.py`, as `bench/ivae_step.py`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time

import common
import numpy as np

ROOT_KEY = 1
# Variants that change a process-wide setting, each in its own process (with this environment).
PROCESS_VARIANTS = {
    "system-alloc": {},
    "devices2": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
}


# --------------------------------------------------------------------------- shapes


def shape_config(shape: str):
    sys.path.insert(0, common.REPO)
    from configs import disncl_f30k, disncl_synthetic

    config = disncl_synthetic.get_config() if shape == "offline" else disncl_f30k.get_config()
    config.num_devices = 1
    config.loss.warmup_epochs = 0  # the clean probabilities of the batch are in use
    # The PyTorch peer implements the joint soft targets (DisNCL's default before session 5);
    # the directional default differs in two [B, B] softmaxes, nothing the timing can see.
    config.loss.update(soft_form="joint", neighbour_weight=0.1, neighbour_trusted="own")
    # The peer has neither the MEI-side decorrelation (DisNCL's default in sessions 6-7) nor
    # the exclusive residual (the default since session 8): the bench times the model both
    # implement.
    config.model.mei_decorrelation = "none"
    config.model.mii_decorrelation = "none"
    if shape == "tiny":
        config.batch_size = 16
        config.model.update(embed_dim=32, word_dim=16, mii_dim=8, mei_dim=8)
    return config


def synthetic_data(shape: str, batch_size: int, *, seed: int = 0):
    """F30K-shaped arrays (`RetrievalData`) of one batch of images with 5 captions each."""
    from jaxmr.data.noise import NoisyPairing
    from jaxmr.data.precomp import PrecompSplit
    from jaxmr.data.retrieval import RetrievalData

    feature_dim, vocab = (2048, 8481) if shape == "paper" else (32, 50)
    rng = np.random.default_rng(seed)
    n_img, n_caps = batch_size, 5 * batch_size
    images = np.abs(rng.standard_normal((n_img, 36, feature_dim))).astype(np.float32)
    lengths = np.clip(np.round(rng.normal(14, 4, n_caps)), 6, 40).astype(np.int32)
    tokens = np.zeros((n_caps, lengths.max()), np.int32)
    for i, n in enumerate(lengths):
        tokens[i, :n] = [1, *rng.integers(4, vocab, n - 2), 2]
    cap2img = np.arange(n_caps, dtype=np.int32) // 5
    noisy = cap2img.copy()
    pick = rng.choice(n_caps, n_caps // 5, replace=False)
    noisy[pick] = noisy[rng.permutation(pick)]
    split = PrecompSplit(images, [""] * n_caps, tokens, lengths, cap2img, 5, "f30k", "train", "")
    pairing = NoisyPairing(noisy, cap2img, noisy != cap2img, "caption", noisy, 0.2)
    return RetrievalData(split, split, split, pairing, {}, "", "", vocab)


def flatten(tree, prefix="") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        out |= flatten(v, key + "/") if isinstance(v, dict) else {key: np.asarray(v)}
    return out


def torch_shapes(config, data) -> dict:
    m, loss = config.model, config.loss
    return dict(
        feature_dim=int(data.train.images.shape[-1]),
        vocab_size=int(data.vocab_size),
        embed_dim=int(m.embed_dim),
        word_dim=int(m.word_dim),
        mii_dim=int(m.mii_dim),
        mei_dim=int(m.mei_dim),
        co_teaching=bool(m.co_teaching),
        learning_rate=float(config.optim.learning_rate),
        b1=float(config.optim.b1),
        b2=float(config.optim.b2),
        grad_clip_norm=float(config.optim.grad_clip_norm),
        est_learning_rate=float(loss.est_learning_rate),
        est_repeats=int(loss.est_repeats),
        club_logvar_bound=float(loss.club_logvar_bound),
        steps_per_epoch=1,
        **{k: float(loss[k]) for k in ("temperature", "target_temperature", "neighbour_weight")},
        **{k: float(loss[k]) for k in ("cond_weight", "gamma", "lambda_dis", "lambda_reg")},
        warmup_epochs=int(loss.warmup_epochs),
    )


# --------------------------------------------------------------------------- JAX


def est_first_phases(task, config, data):
    """The estimator-first order: an estimator phase that computes both networks' codes itself
    (stop-gradient), then the library's encoder phases (the forward pass twice per step)."""
    import jax
    import jax.numpy as jnp

    from jaxmr.losses.mi_bounds import club_estimator_loss
    from jaxmr.models.pure import PureModule
    from jaxmr.tasks.retrieval.disncl import MODALITIES, Estimators
    from jaxmr.tasks.retrieval.nets import Nets
    from jaxmr.train.task import Phase

    names = task.info["nets"]
    m, loss_cfg = config.model, config.loss
    nets = Nets(m, data.train.images.shape[-1], data.vocab_size, names, disentangled=True)
    bound = float(loss_cfg.club_logvar_bound)
    est = PureModule(
        lambda rngs: Estimators(m.mii_dim, m.mei_dim, "club", logvar_bound=bound, rngs=rngs)
    )

    def loss_fn(params, batch, ctx):
        total = 0.0
        for net in names:
            model, e = nets.bind(params, net), est.bind(params[f"est_{net}"])
            codes = (model.image_codes(batch["images"]),) + (
                model.text_codes(batch["tokens"], batch["lengths"]),
            )
            for mod, c in zip(MODALITIES, codes, strict=True):
                s, x = jax.lax.stop_gradient(c["s"]), jax.lax.stop_gradient(c["x"])
                mu, logvar = getattr(e, mod)(s)
                total = total + jnp.mean(club_estimator_loss(mu, logvar, x))
        return total, {}

    est_phase = task.phases[-1]
    return (Phase("est", est_phase.groups, loss_fn, repeats=est_phase.repeats),) + tuple(
        task.phases[:-1]
    )


class JaxRunner:
    """The library's jitted DisNCL step on a fixed batch; `check_path`: also write the initial
    parameters and batch there (for the peer) and compare the peer's losses."""

    def __init__(self, shape: str, variant: str = "carry", check_path: str | None = None):
        import jax

        from jaxmr.tasks.retrieval.task import build_retrieval
        from jaxmr.train import mesh as mesh_lib
        from jaxmr.train import step as step_lib

        self.jax = jax
        config = shape_config(shape)
        # As the trainer does before building the step (jaxmr.train.loop): the library's host
        # allocator policy, "keep"; the `system-alloc` variant (its own process: the setting
        # is process-wide) leaves the C library's defaults, as before the policy existed.
        from jaxmr.train.host_memory import configure_host_allocator

        if variant == "system-alloc":
            config.host_allocator = "system"
        configure_host_allocator(config.host_allocator)
        data = None if shape == "offline" else synthetic_data(shape, config.batch_size)
        if data is None:
            from jaxmr.data.retrieval import load_retrieval_data

            data = load_retrieval_data(config.data)
        task = build_retrieval(config, data=data)
        if variant == "est-first":
            task.phases = est_first_phases(task, config, data)
        if variant == "flax-gru":  # the step with the reference Bi-GRU: two nnx.RNNs
            from jaxmr.models.retrieval import GRUTextEncoder

            GRUTextEncoder.fused = False
        # `devices<N>` (its own process, started with N simulated host devices): the step
        # sharded over N CPU devices, as the trainer shards it over every device it sees.
        mesh = mesh_lib.make_data_mesh(0 if variant.startswith("devices") else 1)
        shardings = jax.tree.map(lambda s: s.sharding, step_lib.abstract_state(task, mesh))
        self.state = step_lib.init_state(task, jax.random.key(config.seed), mesh)
        sampler = task.make_sampler(batch_size=config.batch_size, seed=config.seed)
        host = sampler.batch(0)
        rng = np.random.default_rng(1)  # clean probabilities as a split would give them
        for net in task.info["nets"]:
            host[f"clean_prob_{net}"] = rng.uniform(0, 1, host["lengths"].shape).astype(np.float32)
        self.batch = mesh_lib.place_batch(host, mesh)
        self.key = jax.random.key(ROOT_KEY)
        fn = step_lib.jit_train_step(task, mesh, shardings)
        self.info = {
            "platform": jax.devices()[0].platform,
            "device_kind": jax.devices()[0].device_kind,
            "batch_size": int(config.batch_size),
            "regions": list(host["images"].shape[1:]),
            "padded_length": int(host["tokens"].shape[1]),
            "mean_length": float(host["lengths"].mean()),
            "vocab_size": int(data.vocab_size),
            "phases": [p.name for p in task.phases],
        }
        # FLOPs of the maths at the padded length, counted on the reference Bi-GRU (the fused
        # one loops in `while`s, which `jaxpr_flops` counts once).
        from jaxmr.models.retrieval import GRUTextEncoder

        fused, GRUTextEncoder.fused = GRUTextEncoder.fused, False
        flops = common.jaxpr_flops(step_lib.make_train_step(task), self.state, self.batch, self.key)
        GRUTextEncoder.fused = fused
        self.info["jaxpr_gflop"] = flops["total"] / 1e9
        if check_path:
            params = flatten(jax.device_get(self.state.params))
            np.savez(check_path, **{f"p:{k}": v for k, v in params.items()}, **host)
            self.info["torch_shapes"] = torch_shapes(config, data)
        t0 = time.perf_counter()
        self.step_fn = fn.lower(self.state, self.batch, self.key).compile()
        self.info["compile_s"] = time.perf_counter() - t0
        if variant == "flax-gru":  # compiled: the other runners of this process trace fused
            GRUTextEncoder.fused = True
        steps = [self._step() for _ in range(2)]
        if check_path:
            self.info["loss_check"] = loss_check(steps, check_path, self.info["torch_shapes"])

    def _step(self):
        self.state, m = self.step_fn(self.state, self.batch, self.key)
        return {k: float(v) for k, v in self.jax.device_get(m).items()}

    def run(self, n):
        t0 = time.perf_counter()
        state, m = self.state, None
        for _ in range(n):
            state, m = self.step_fn(state, self.batch, self.key)
        self.jax.block_until_ready((state, m))
        self.state = state
        return time.perf_counter() - t0


def jax_perms(step: int, net: int, modality: int, n: int):
    """CLUB-sample's permutation in the JAX step: root key -> step -> phase -> modality."""
    import jax

    from jaxmr.losses.mi_bounds import marginal_partner_indices

    key = jax.random.fold_in(jax.random.key(ROOT_KEY), step)
    key = jax.random.fold_in(jax.random.fold_in(key, net), modality)
    return np.asarray(marginal_partner_indices(key, n))


def loss_check(jax_steps, path, shapes) -> dict:
    """Every logged term, JAX vs the peer from the same weights, batch and permutations."""
    if importlib.util.find_spec("torch") is None:
        return {"skipped": "torch not installed"}
    import torch
    import torch_disncl

    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    params = {k[2:]: v for k, v in arrays.items() if k.startswith("p:")}
    n = arrays["lengths"].shape[0]
    peer = torch_disncl.TorchDisNCLStep(
        shapes,
        arrays,
        params,
        perm_fn=lambda s, k, i: torch.as_tensor(jax_perms(s, k, i, n), dtype=torch.long),
    )
    out, worst = {}, 0.0
    for step, jm in enumerate(jax_steps):
        tm = {k: float(v) for k, v in peer.step().items()}
        for k, tv in tm.items():
            jv = jm[k]
            # Relative to max(|term|, 1): a term near 0 is a difference of O(1) quantities
            # (L_X = -(T_ii - logsumexp_j T_ij + log N)), exact to float32 only absolutely.
            rel = abs(jv - tv) / max(abs(jv), 1.0)
            out[f"step{step}/{k}"] = {"jax": jv, "torch": tv, "rel_diff": rel}
            if step == 0:
                worst = max(worst, rel)
    out["max_rel_diff_step0"] = worst
    out["max_rel_diff_step1"] = max(v["rel_diff"] for k, v in out.items() if "step1/" in k)
    return out


# --------------------------------------------------------------------------- PyTorch


class TorchRunner:
    def __init__(self, path: str, shapes: dict, threads: int, device: str = "cpu",
                 compile_mode: str | None = None, allocator: str = "system"):  # fmt: skip
        import torch_disncl

        from jaxmr.train.host_memory import configure_host_allocator

        configure_host_allocator(allocator)  # process-wide: this worker's own

        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        params = {k[2:]: v for k, v in arrays.items() if k.startswith("p:")}
        n = arrays["lengths"].shape[0]
        make = lambda mode: torch_disncl.TorchDisNCLStep(
            shapes,
            arrays,
            params,
            threads=threads,
            device=device,
            compile_mode=mode,
            perm_fn=_fixed_perms(n),
        )
        self.step = make(compile_mode)
        self.info = dict(self.step.info)
        if compile_mode:  # the compiled step's losses against the eager step's, same start
            eager = make(None).step()
            t0 = time.perf_counter()
            compiled = self.step.step()
            self.info["first_step_s"] = time.perf_counter() - t0
            self.info["loss_rel_diff_vs_eager"] = max(
                abs(float(compiled[k]) - float(v)) / max(abs(float(v)), 1.0)
                for k, v in eager.items()
            )
        else:
            self.info["first_step_s"] = self.step.run(1)
        self.step.perm_fn = None  # from now on torch.randperm, as the field's CLUBSample

    def run(self, n):
        return self.step.run(n)


def _fixed_perms(n):
    import torch

    return lambda s, k, i: torch.as_tensor(np.random.default_rng([s, k, i]).permutation(n))


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="paper,offline")
    ap.add_argument("--json", default=None, help="output (default bench/out/disncl_step.json)")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes, 2 rounds, no compile")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--target-s", type=float, default=1.0, help="seconds per timing")
    ap.add_argument(
        "--threads", default=None, help="torch thread counts (default: cores,1; 0: no PyTorch)"
    )
    ap.add_argument("--compile-modes", default="default", help="torch.compile modes ('': none)")
    ap.add_argument("--compile-shapes", default="offline,paper", help="shapes compiled")
    ap.add_argument(
        "--compile-threads", default=None, help="thread counts compiled (default: the fewest)"
    )
    ap.add_argument(
        "--jax-variants",
        default="",
        help="extra JAX variants: est-first, flax-gru, system-alloc, devices2",
    )
    ap.add_argument(
        "--peer-allocator",
        default="system",
        choices=("system", "keep"),
        help="host allocator policy of the PyTorch peers' processes (jaxmr.train.host_memory)",
    )
    args = ap.parse_args(argv)
    if args.dry_run:
        args.shapes, args.repeats, args.target_s, args.compile_modes = "tiny", 2, 0.05, ""
        args.threads = args.threads or "1"
    shapes = args.shapes.split(",")
    path = args.json or os.path.join(common.OUT_DIR, "disncl_step.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    threads = sorted({int(t) for t in (args.threads or f"{os.cpu_count()},1").split(",")})[::-1]
    threads = [t for t in threads if t > 0]  # --threads 0: the JAX variants only
    modes = [m for m in args.compile_modes.split(",") if m]
    variants = [v for v in args.jax_variants.split(",") if v]
    has_torch = importlib.util.find_spec("torch") is not None
    results = {"machine": common.machine(), "dry_run": args.dry_run, "shapes": {}}
    results["argv"] = sys.argv[1:] if argv is None else list(argv)
    tmp = tempfile.mkdtemp(prefix="jaxmr_disncl_")
    factories, alone = {}, {}
    for s in shapes:
        check = os.path.join(tmp, f"{s}.npz")
        factories[s] = (JaxRunner, {"shape": s, "check_path": check})
        for v in variants:  # system-alloc and devices<N> change process-wide settings
            (alone.setdefault(v, {}) if v in PROCESS_VARIANTS else factories)[f"{s}/{v}"] = (
                JaxRunner,
                {"shape": s, "variant": v},
            )
    common.log("building the JAX steps (compile, loss check)...")
    jax_w = common.Worker(factories)
    jax_of = {name: jax_w for name in factories}
    for v, fs in alone.items():  # one process per process-wide variant
        w = common.Worker(fs, env=PROCESS_VARIANTS[v])
        jax_of |= {name: w for name in fs}
    device, note = "cpu", None
    if jax_w.info[shapes[0]]["platform"] != "cpu" and has_torch:
        import torch  # the peer runs on the same kind of device, or not at all

        has_torch, device = torch.cuda.is_available(), "cuda"
    if not has_torch:
        note = "torch (with a device like JAX's) not installed: JAX step only"
    has_torch = has_torch and bool(threads)
    torch_ws = []
    try:
        owner = {}
        if has_torch:
            compile_threads = [
                int(t) for t in (args.compile_threads or str(threads[-1])).split(",")
            ]
            for th in threads:
                for mode in [None, *(modes if th in compile_threads else [])]:
                    fs = {
                        s: (
                            TorchRunner,
                            {
                                "path": os.path.join(tmp, f"{s}.npz"),
                                "shapes": jax_w.info[s]["torch_shapes"],
                                "threads": th,
                                "device": device,
                                "compile_mode": mode,
                                "allocator": args.peer_allocator,
                            },
                        )
                        for s in shapes
                        if mode is None or s in args.compile_shapes.split(",")
                    }
                    if not fs:
                        continue
                    label = f"torch-{th}t" + (f"-compile-{mode}" if mode else "")
                    w = common.Worker(fs, wait=False)
                    torch_ws.append(w)
                    owner |= {(label, s): w for s in fs}
            common.log("building the PyTorch peers (torch.compile takes minutes)...")
            for w in torch_ws:
                w.wait()
        for s in shapes:
            targets = [("jax", jax_w, s)]
            targets += [(f"jax-{v}", jax_of[f"{s}/{v}"], f"{s}/{v}") for v in variants]
            targets += [(lab, w, s) for (lab, sh), w in owner.items() if sh == s]
            steps = {lab: common.calibrate(w, name, args.target_s) for lab, w, name in targets}
            common.log(f"[{s}] steps per timing: {steps}")
            times = common.interleaved(targets, steps=steps, repeats=args.repeats, log=common.log)
            results["shapes"][s] = report(s, times, jax_of, owner)
            results["note"] = note
            results["markdown"] = markdown(results)
            with open(path, "w") as f:
                json.dump(results, f, indent=2, default=str)
    finally:
        for w in {id(w): w for w in jax_of.values()}.values():
            w.close()
        for w in torch_ws:
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)
    common.log(results.get("markdown", ""))
    common.log(f"saved {path}")


def report(shape, times, jax_of, owner) -> dict:
    info = jax_of[shape].info[shape]
    jt = times["jax"]
    out = {k: v for k, v in info.items() if k != "torch_shapes"}
    out["jax_ms"] = common.summary([1e3 * v for v in jt])
    out["gflop_s"] = info["jaxpr_gflop"] / (out["jax_ms"]["median"] / 1e3)
    rows = {}
    for label, t in times.items():
        if label == "jax":
            continue
        row = {"ms": common.summary([1e3 * v for v in t]), "over_jax": common.paired_ratio(t, jt)}
        if label.startswith("jax-"):
            name = f"{shape}/{label[4:]}"
            row["compile_s"] = jax_of[name].info[name]["compile_s"]
        else:
            tinfo = owner[(label, shape)].info[shape]
            row |= {k: tinfo.get(k) for k in ("first_step_s", "loss_rel_diff_vs_eager", "threads")}
            row["compiled"] = "compile" in label
        rows[label] = row
    out["others"] = rows
    eager = [k for k, r in rows.items() if r.get("compiled") is False]
    compiled = [k for k, r in rows.items() if r.get("compiled")]
    best = lambda ks: min(ks, key=lambda k: rows[k]["over_jax"]["median"]) if ks else None
    out["fastest_eager_torch"], out["fastest_compiled_torch"] = best(eager), best(compiled)
    out["raw_seconds_per_step"] = times
    return out


def markdown(results) -> str:
    lines = [
        "| shape | implementation | ms/step median [IQR] | time / JAX (paired) | "
        "compile or first step |",
        "|---|---|---|---|---|",
    ]
    for s, r in results["shapes"].items():
        ms = r["jax_ms"]
        lines.append(
            f"| {s} (batch {r['batch_size']}, regions {r['regions'][0]}x{r['regions'][1]}, "
            f"L {r['padded_length']}) | JAX jit | {ms['median']:.1f} [{ms['q25']:.1f}-"
            f"{ms['q75']:.1f}] | 1 | compile {r['compile_s']:.1f} s |"
        )
        for label, row in r["others"].items():
            m = row["ms"]
            if "compile_s" in row:
                first = f"compile {row['compile_s']:.1f} s"
            elif row["compiled"]:
                first = (
                    f"first step (compiles) {row['first_step_s']:.0f} s; loss vs eager "
                    f"{row['loss_rel_diff_vs_eager']:.1e}"
                )
            else:
                first = f"first step {row['first_step_s']:.2f} s"
            lines.append(
                f"| | {label} | {m['median']:.1f} [{m['q25']:.1f}-{m['q75']:.1f}] | "
                f"{common.fmt_ratio(row['over_jax'])} | {first} |"
            )
    for s, r in results["shapes"].items():
        chk = r.get("loss_check", {})
        if "max_rel_diff_step0" in chk:
            lines.append(
                f"\n{s}: loss check, max |JAX - torch| / max(|term|, 1) over the logged terms: "
                f"{chk['max_rel_diff_step0']:.1e} at step 0 (same weights), "
                f"{chk['max_rel_diff_step1']:.1e} at step 1"
            )
        elif chk:
            lines.append(f"\n{s}: loss check {chk.get('skipped')}")
        for kind in ("eager", "compiled"):
            best = r[f"fastest_{kind}_torch"]
            if best:
                ratio = common.fmt_ratio(r["others"][best]["over_jax"])
                lines.append(f"{s}: fastest {kind} PyTorch ({best}) / JAX = {ratio}")
        lines.append(
            f"{s}: JAX step {r['jaxpr_gflop']:.2f} GFLOP (jaxpr, the maths at the padded "
            f"length), {r['gflop_s']:.1f} GFLOP/s"
        )
    if results.get("note"):
        lines.append(results["note"])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
