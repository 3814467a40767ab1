"""The iIVAE `implicit` model, loss and Adam step in PyTorch: the peer the JAX step is timed
against. Same maths as `jaxmr.models.ivae` + `jaxmr.tasks.ivae.synthetic.implicit_loss`:

    g = A_K o (I + h_K) o ... o A_1 o (I + h_1),  h_k = MLP(D -> hidden -> D), A_k affine
    loss = -mean(beta log p(g(y)_{:d} | x) [+ log N(g(y)_{d:}; 0, e^extra)] + log|det J_g|)
           + gamma mean(sum_k relu(||J_hk||_2 - c)^2)

Jacobian terms, as in `jaxmr.losses.jacobian`:
- exact: per-example J_h by `torch.func.vmap(torch.func.jacrev(h))` (or `jacfwd`), log det by
  `slogdet(I + J)`, spectral norm by `eigvalsh` of the Gram matrix;
- estimated: spectral norm by `power_iters` JVP/VJP power-iteration steps (iterate held fixed,
  gradient of ||J v*||), log det by the `series_terms`-term power series with Hutchinson
  probes (one VJP per term and probe). The branch acts row by row, so a batched JVP/VJP of the
  batch equals the per-example ones stacked; no vmap is needed there.

Used only by the benchmarks (`bench/ivae_step.py`, `bench/jacobian_cost.py`); `check()` below
compares loss and gradients with the JAX library on the same parameters and batch.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
from torch import nn
from torch.func import jacfwd, jacrev, jvp, vjp, vmap

LOG_2PI = math.log(2.0 * math.pi)

ACTIVATIONS = {
    "tanh": torch.tanh,
    "elu": nn.functional.elu,
    "lipswish": lambda x: x * torch.sigmoid(x) / 1.1,
    "leaky_relu": lambda x: nn.functional.leaky_relu(x, 0.2),
    "xtanh": lambda x: torch.tanh(x) + 0.1 * x,
}


def _glorot_uniform_(w: torch.Tensor, scale: float) -> None:
    # flax variance_scaling(scale, "fan_avg", "uniform"); torch weight is [out, in].
    fan_out, fan_in = w.shape
    limit = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    nn.init.uniform_(w, -limit, limit)


class MLP(nn.Module):
    def __init__(self, in_dim, hidden, out_dim, *, activation="tanh", final_init_scale=1.0):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.act = ACTIVATIONS[activation]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            _glorot_uniform_(layer.weight, final_init_scale**2 if last else 1.0)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


def gaussian_log_prob(x, mean, logvar):
    return -0.5 * torch.sum(LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar), dim=-1)


def spectral_norm_exact(jac):
    gram = jac @ jac.transpose(-1, -2)
    return torch.sqrt(torch.clamp(torch.linalg.eigvalsh(gram)[..., -1], min=0.0))


def _small_matmul(a, b):
    return torch.sum(a[..., :, :, None] * b[..., None, :, :], dim=-2)


def log_abs_det_ew(a):
    """log|det A| by the unrolled, pivoted LU of `jaxmr.losses.lapack_free.log_abs_det`,
    ported op for op: the same algorithm as the JAX step, run eagerly."""
    n = a.shape[-1]
    idx = torch.arange(n)
    acc = torch.zeros(a.shape[:-2], dtype=a.dtype)
    for k in range(n):
        col = torch.where(idx >= k, a[..., :, k].abs(), torch.full((), -1.0, dtype=a.dtype))
        p = col.argmax(-1)
        is_p = (idx == p[..., None])[..., :, None]
        row_p = torch.where(is_p, a, torch.zeros((), dtype=a.dtype)).sum(-2)
        row_k = a[..., k, :]
        is_k = (idx == k)[:, None]
        a = torch.where(is_k, row_p[..., None, :], torch.where(is_p, row_k[..., None, :], a))
        pivot = a[..., k, k]
        acc = acc + pivot.abs().log()
        below = (idx > k).to(a.dtype)
        safe = torch.where(pivot == 0, torch.ones((), dtype=a.dtype), pivot)
        factor = below * a[..., :, k] / safe[..., None]
        a = a - factor[..., :, None] * a[..., k, None, :]
    return acc


def spectral_norm_ew(jac, squarings=10):
    """Spectral norm by `jaxmr.losses.lapack_free.spectral_norm_gram`'s algorithm (Gram
    squarings, stop-gradient top eigenvector), ported op for op (square Jacobians)."""
    gram = _small_matmul(jac.transpose(-1, -2), jac)
    b = gram.detach()
    for _ in range(squarings):
        b = b / (b.abs().amax(dim=(-2, -1), keepdim=True) + 1e-30)
        b = _small_matmul(b, b)
    j = (b**2).sum(-2).argmax(-1)
    u = torch.gather(b, -1, j[..., None, None].expand(*b.shape[:-1], 1))[..., 0]
    u = (u / (u.norm(dim=-1, keepdim=True) + 1e-30)).detach()
    return torch.einsum("...ij,...j->...i", jac, u).norm(dim=-1)


def spectral_norm_power(h, y, n_iter):
    """Batched power iteration on J^T J; rows are independent examples."""
    with torch.no_grad():
        yd = y.detach()
        v = torch.randn_like(yd)
        _, pullback = vjp(h, yd)
        for _ in range(n_iter):
            v = v / (torch.linalg.norm(v, dim=-1, keepdim=True) + 1e-12)
            u = jvp(h, (yd,), (v,))[1]
            (v,) = pullback(u)
        v = v / (torch.linalg.norm(v, dim=-1, keepdim=True) + 1e-12)
    # Differentiable in the parameters and in y: J v* by forward mode, as in JAX.
    return torch.linalg.norm(jvp(h, (y,), (v,))[1], dim=-1)


def logdet_power_series(h, y, n_terms, n_probes):
    """sum_k (-1)^{k+1} v^T J^k v / k with Hutchinson probes; differentiable."""
    _, pullback = vjp(h, y)
    total = torch.zeros(y.shape[0], dtype=y.dtype)
    for _ in range(n_probes):
        v = torch.randn_like(y)
        w = v
        for k in range(n_terms):
            (w,) = pullback(w)
            sign = 1.0 if k % 2 == 0 else -1.0
            total = total + sign * torch.sum(w * v, dim=-1) / (k + 1)
    return total / n_probes


class IVAETorch(nn.Module):
    """Flow g on R^D, conditional prior p(z|x), per-dimension variances of the extra outputs."""

    def __init__(self, shapes: dict, x_dim: int, y_dim: int):
        super().__init__()
        s = shapes
        self.s, self.d, self.y_dim = s, s["latent_dim"], y_dim
        self.blocks = nn.ModuleList(
            MLP(
                y_dim,
                s["flow_hidden"],
                y_dim,
                activation=s["flow_activation"],
                final_init_scale=s["flow_init_scale"],
            )
            for _ in range(s["flow_blocks"])
        )
        k = s["flow_blocks"]
        self.log_scale = nn.ParameterList(nn.Parameter(torch.zeros(y_dim)) for _ in range(k))
        self.shift = nn.ParameterList(nn.Parameter(torch.zeros(y_dim)) for _ in range(k))
        self.learn_mean = s["prior_mean"] == "learned"
        out = 2 * self.d if self.learn_mean else self.d
        self.prior = MLP(x_dim, s["prior_hidden"], out, activation=s["prior_activation"])
        if y_dim > self.d:
            self.extra_logvar = nn.Parameter(torch.zeros(y_dim - self.d))

    def loss(self, x, y, *, jacobian="rev"):
        s = self.s
        total = torch.zeros(y.shape[0], dtype=y.dtype)
        sigmas = []
        need_jac = s["logdet"] == "exact" or s["spectral"] == "exact"
        # "rev-ew": jacrev Jacobians, then the JAX step's own algorithm for the exact terms
        # (all blocks stacked, unrolled LU, element-wise Gram squarings), run eagerly.
        fused = jacobian == "rev-ew"
        jacs = []
        for k, h in enumerate(self.blocks):
            if need_jac:
                jac = vmap(jacfwd(h) if jacobian == "fwd" else jacrev(h))(y)
            if fused:
                jacs.append(jac)
            elif s["logdet"] == "exact":
                eye = torch.eye(y.shape[-1], dtype=y.dtype)
                total = total + torch.linalg.slogdet(eye + jac)[1]
            else:
                total = total + logdet_power_series(h, y, s["series_terms"], s["probes"])
            if fused:
                pass
            elif s["spectral"] == "exact":
                sigmas.append(spectral_norm_exact(jac))
            else:
                sigmas.append(spectral_norm_power(h, y, s["power_iters"]))
            y = y + h(y)
            if s["flow_affine"]:
                y = y * torch.exp(self.log_scale[k]) + self.shift[k]
                total = total + torch.sum(self.log_scale[k])
        if fused:
            if not (s["logdet"] == "exact" and s["spectral"] == "exact"):
                raise ValueError("jacobian='rev-ew' is the exact-terms path only")
            jac = torch.stack(jacs)
            eye = torch.eye(jac.shape[-1], dtype=jac.dtype)
            total = total + log_abs_det_ew(eye + jac).sum(0)
            sigmas = spectral_norm_ew(jac).transpose(0, 1)
        else:
            sigmas = torch.stack(sigmas, dim=-1)
        out = self.prior(x)
        if self.learn_mean:
            mean, logvar = torch.chunk(out, 2, dim=-1)
        else:
            mean, logvar = torch.zeros_like(out), out
        log_prior = gaussian_log_prob(y[:, : self.d], mean, logvar)
        if y.shape[1] > self.d:
            r = y[:, self.d :]
            log_prior = log_prior + gaussian_log_prob(
                r, torch.zeros_like(r), self.extra_logvar.expand_as(r)
            )
        penalty = torch.sum(torch.relu(sigmas - s["lipschitz_bound"]) ** 2, dim=-1)
        loss = -torch.mean(s["beta"] * log_prior + total) + s["gamma"] * torch.mean(penalty)
        aux = {
            "log_prior": log_prior.mean(),
            "log_det": total.mean(),
            "lipschitz_penalty": penalty.mean(),
            "max_branch_sigma": sigmas.max(),
        }
        return loss, aux


class TorchStep:
    """Adam step of `IVAETorch` on a fixed batch: `run(n) -> seconds`.

    Args:
      shapes: `common.config_shapes(config)`.
      x_dim, y_dim: modality dimensions.
      threads: `torch.set_num_threads` (the same core count XLA uses).
      jacobian: `rev` (`jacrev`, the default asked for) or `fwd` (`jacfwd`).
      compile_mode: None (eager) or a `torch.compile` mode (`default`,
        `max-autotune-no-cudagraphs`, ...): the loss (forward, with its `torch.func` Jacobian
        transforms) is compiled by Dynamo/Inductor and its backward by AOTAutograd; Adam stays
        eager (foreach). The first step, which compiles, is `info["first_step_s"]`; before it
        the compiled loss is compared with the eager one on the same parameters and batch
        (`info["loss_rel_diff_vs_eager"]`).
    """

    def __init__(
        self, shapes, x_dim, y_dim, *, threads=None, jacobian="rev", seed=0, compile_mode=None
    ):
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.model = IVAETorch(shapes, x_dim, y_dim)
        self.opt = torch.optim.Adam(
            self.model.parameters(),
            lr=shapes["learning_rate"],
            betas=(shapes["b1"], shapes["b2"]),
            eps=1e-8,
        )
        rng = np.random.default_rng(seed)
        b = shapes["batch_size"]
        self.x = torch.as_tensor(rng.standard_normal((b, x_dim)), dtype=torch.float32)
        self.y = torch.as_tensor(rng.standard_normal((b, y_dim)), dtype=torch.float32)
        self.jacobian = jacobian
        self.info = {"threads": torch.get_num_threads(), "torch": torch.__version__}
        self.loss_fn = self.model.loss
        if compile_mode:
            self.info["compile_mode"] = compile_mode
            eager = float(self.model.loss(self.x, self.y, jacobian=jacobian)[0])
            self.loss_fn = torch.compile(self.model.loss, mode=compile_mode)
            t0 = time.perf_counter()
            compiled = float(self.loss_fn(self.x, self.y, jacobian=jacobian)[0])
            self.info["compile_forward_s"] = time.perf_counter() - t0
            self.info["loss_rel_diff_vs_eager"] = abs(compiled - eager) / abs(eager)
        t0 = time.perf_counter()
        self.run(1)
        self.info["first_step_s"] = time.perf_counter() - t0

    def set_batch(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.float32)

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        loss, aux = self.loss_fn(self.x, self.y, jacobian=self.jacobian)
        loss.backward()
        # The JAX step also returns the gradient norm; same work here, no host sync.
        aux["grad_norm"] = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in self.model.parameters()])
        )
        self.opt.step()
        return loss, aux

    def run(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            loss, _ = self.step()
        self.last_loss = float(loss)
        return time.perf_counter() - t0


def load_jax_params(model: IVAETorch, params: dict) -> None:
    """Copies the JAX library's parameters (`state.params["model"]`) into the torch model."""

    def t(a):
        return torch.as_tensor(np.asarray(a), dtype=torch.float32)

    def load_mlp(mlp: MLP, p):
        for i, layer in enumerate(mlp.layers):
            layer.weight.data = t(p[f"dense_{i}"]["kernel"]).T.contiguous()
            layer.bias.data = t(p[f"dense_{i}"]["bias"])

    flow = params["flow"]
    for k, block in enumerate(model.blocks):
        load_mlp(block, flow[f"block_{k}"])
        if model.s["flow_affine"]:
            model.log_scale[k].data = t(flow[f"log_scale_{k}"])
            model.shift[k].data = t(flow[f"shift_{k}"])
    load_mlp(model.prior, params["prior"]["net"])
    if "extra_logvar" in params:
        model.extra_logvar.data = t(params["extra_logvar"])


def check(config=None, *, perturb: float = 0.3, seed: int = 0) -> dict:
    """Loss and gradients of the torch peer against the JAX library, same parameters and batch
    (exact Jacobian terms; the flow is perturbed away from its near-identity init so the
    Lipschitz penalty is active). Returns the largest relative differences."""
    import common
    import jax

    config = config or common.ivae_config()
    step = common.JaxStep(config)
    params = jax.device_get(step.state.params)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda a: a + perturb * rng.standard_normal(a.shape), params)
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    batch = {k: np.asarray(v) for k, v in step.loader.batch(0).items() if k in ("x", "y")}
    loss_fn = step.task.phases[0].loss_fn
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (jl, jaux), jg = value_and_grad(params, batch, jax.random.key(0))

    shapes = common.config_shapes(config)
    model = IVAETorch(shapes, batch["x"].shape[1], batch["y"].shape[1])
    load_jax_params(model, params["model"])
    out = {}
    for mode in ("rev", "fwd", "rev-ew"):
        model.zero_grad()
        x, y = torch.as_tensor(batch["x"]), torch.as_tensor(batch["y"])
        tl, taux = model.loss(x, y, jacobian=mode)
        tl.backward()
        # Gradients back into the JAX layout, then the largest relative difference.
        tg = {"flow": {}, "prior": {"net": {}}}
        for k, block in enumerate(model.blocks):
            tg["flow"][f"block_{k}"] = {
                f"dense_{i}": {"kernel": ly.weight.grad.T.numpy(), "bias": ly.bias.grad.numpy()}
                for i, ly in enumerate(block.layers)
            }
            tg["flow"][f"log_scale_{k}"] = model.log_scale[k].grad.numpy()
            tg["flow"][f"shift_{k}"] = model.shift[k].grad.numpy()
        tg["prior"]["net"] = {
            f"dense_{i}": {"kernel": ly.weight.grad.T.numpy(), "bias": ly.bias.grad.numpy()}
            for i, ly in enumerate(model.prior.layers)
        }
        if hasattr(model, "extra_logvar"):
            tg["extra_logvar"] = model.extra_logvar.grad.numpy()
        scale = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(jg["model"]))
        diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), jg["model"], tg)
        out[mode] = {
            "loss_jax": float(jl),
            "loss_torch": float(tl.detach()),
            "penalty_jax": float(jaux["lipschitz_penalty"]),
            "penalty_torch": float(taux["lipschitz_penalty"].detach()),
            "max_grad_abs_diff_over_max_grad": max(jax.tree.leaves(diffs)) / scale,
        }
    return out


def check_estimators(y_dim: int = 16, *, seed: int = 0) -> dict:
    """Torch estimators against torch exact terms at a small D (many probes and terms for the
    series; many iterations for the power method, whose gradient must then match the exact
    spectral norm's)."""
    torch.manual_seed(seed)
    h = MLP(y_dim, (64, 64), y_dim, final_init_scale=0.5)
    y = torch.randn(64, y_dim)
    params = list(h.parameters())

    def grads(value):
        # The last bias does not enter a Jacobian: its gradient is None (zero).
        gs = torch.autograd.grad(value.sum(), params, allow_unused=True)
        return torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).flatten()
                for p, g in zip(params, gs, strict=True)
            ]
        )

    jac = vmap(jacrev(h))(y)
    exact_ld = torch.linalg.slogdet(torch.eye(y_dim) + jac)[1]
    exact_sn = spectral_norm_exact(jac)
    ld = logdet_power_series(h, y, 30, 2000)
    sn = spectral_norm_power(h, y, 50)
    g_exact, g_power = grads(exact_sn), grads(sn)
    with torch.no_grad():
        return {
            "logdet_mean_err": float((ld - exact_ld).mean()),
            "logdet_max_abs_err": float((ld - exact_ld).abs().max()),
            "logdet_mean_abs": float(exact_ld.abs().mean()),
            "sigma_max_rel_err": float(((sn - exact_sn).abs() / exact_sn).max()),
            "sigma_grad_rel_err": float((g_power - g_exact).norm() / g_exact.norm()),
        }


if __name__ == "__main__":
    import json
    import sys

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print(json.dumps({"estimators": check_estimators()}, indent=2), flush=True)
    print(json.dumps({"vs_jax": check()}, indent=2))
