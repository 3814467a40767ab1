"""Latent traversals of the iIVAE family: the implicit decoder g^{-1} made visible.

From a few data points, one latent at a time is moved over mean ± `span` std (its spread over
the evaluated examples) with the others held, decoded back to the target space, and shown:
- shapes benchmark: through the target's PCA basis to pixels, one row per latent
  (`traversal.png`, labelled; `traversal_grid.png`, the raw grid);
- generated synthetic data: through the inverse of the true mixing to the true factors, so one
  sees which factor moves when latent i moves (`traversal_factors.png`, `traversal_lines.png`).
`implicit` decodes with the flow's fixed-point inverse (`ResidualFlow.inverse`), and also
reports what that inverse costs and where it fails (`inverse_convergence.png`): the residual
max |g(g^{-1}(z)) - z| after 1 ... 300 iterations per block on data points, on the traversal
grid and on points c·g(y), c = 2, 4, 8, 16, outside the data; the time of one inverse; the
largest branch Lipschitz constant at the decoded points (the penalty keeps it below 1 only
where the data are). The explicit-decoder variants decode with the decoder they trained.
docs/ivae.md, "Latent traversals".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmr.data.shapes_task import pca_images
from jaxmr.data.synthetic import unmix
from jaxmr.losses.flow import residual_flow_jacobian_terms
from jaxmr.metrics.mcc import correlation_matrix
from jaxmr.train.task import Evaluator
from jaxmr.viz import traversal as viz

COST_ITERATIONS = (1, 3, 10, 30, 100, 300)
STRESS_SCALES = (2, 4, 8, 16)  # z = c * g(y): points outside the data


def _local_copy(params):
    """The replicated parameters as one device's copy: these small computations then compile
    for one device instead of being partitioned over the training mesh (on 8 simulated CPU
    devices, 1.1 s instead of 2.8 s for `run` on the tiny shapes run of the tests)."""
    return jax.tree.map(lambda a: a.addressable_data(0) if isinstance(a, jax.Array) else a, params)


class TraversalEvaluator(Evaluator):
    """Traversal figures and the inverse's round trip and cost (see the module docstring).

    Args:
      bind: params -> the task's `IVAEModel`.
      variant: `implicit` (decode by the flow's inverse) or `ivae` / `vae` (by the decoder).
      arrays: `x`, `y` and, if known, `s` (the task's data; `y` as features, before any
        projection).
      maps: from `load_data_with_maps`: `pixels` + `size` (PCA basis of the shapes targets) or
        `unmix` + `activation` + `slope` (the synthetic mixing), or neither (nothing rendered).
      project / unproject: features -> the model's target space and back (identity, or the
        fixed top-d projection and its transpose, which loses the other directions).
      lossy: True when `unproject` is not an exact inverse (said in the metrics).
      num_points, num_steps, span: traversed data points, values per latent, range in stds.
      num_iters: fixed-point iterations per block for decoding (the flow's default, 100).
      max_examples: examples for the latents' spread and the round trip (random, `seed`).
      tolerance: residual below which the inverse counts as converged.
      cost_points: data points for the round trip and the inverse's cost (eval.py).
    """

    def __init__(
        self,
        name: str,
        *,
        bind: Callable,
        variant: str,
        latent_dim: int,
        arrays: dict[str, np.ndarray],
        maps: dict,
        project: Callable,
        unproject: Callable,
        lossy: bool = False,
        every_steps: int = 0,
        num_points: int = 3,
        num_steps: int = 9,
        span: float = 2.0,
        num_iters: int = 100,
        max_examples: int = 2000,
        tolerance: float = 1e-4,
        cost_points: int = 256,
        seed: int = 0,
        factor_names: tuple[str, ...] | None = None,
    ):
        if variant not in ("implicit", "ivae", "vae"):
            raise ValueError(f"traversals need a decoder or the flow's inverse, not {variant!r}")
        self.name, self.every_steps, self.variant = name, every_steps, variant
        self.d, self.maps, self.lossy = latent_dim, maps, lossy
        self.num_steps, self.span, self.num_iters = num_steps, span, num_iters
        self.tolerance, self.cost_points = tolerance, cost_points
        n = len(arrays["y"])
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(n, min(max_examples, n), replace=False))
        self.arrays = {k: np.asarray(v)[idx] for k, v in arrays.items()}
        self.points = np.sort(rng.choice(len(idx), min(num_points, len(idx)), replace=False))
        self.example_ids = idx[self.points]  # the traversed examples' rows in the data
        k = self.arrays["s"].shape[1] if "s" in self.arrays else 0
        self.factor_names = tuple(factor_names or (f"s{j}" for j in range(k)))
        self._project, self._unproject = jax.jit(project), jax.jit(unproject)
        d = latent_dim

        def encode(params, x, y):
            model = bind(params)
            if variant == "implicit":
                full = model.flow(project(y))
                return full[:, :d], full
            z = model.encoder(
                jnp.concatenate([project(y), x], -1) if variant == "ivae" else project(y)
            )[0]
            return z, z

        def decode(params, z, n_iters):
            model = bind(params)
            if variant == "implicit":
                return model.flow.inverse(z, num_iters=n_iters)
            return model.decoder(z)

        def inverse_checked(params, z, n_iters):
            """g^{-1}(z) after n_iters iterations per block and max_j |g(g^{-1}(z)) - z|_j."""
            flow = bind(params).flow
            v = flow.inverse(z, num_iters=n_iters)
            return v, jnp.max(jnp.abs(flow(v) - z), axis=-1)

        def branch_sigmas(params, v):
            _, _, blocks = bind(params).flow.forward_with_blocks(v)
            return residual_flow_jacobian_terms(blocks, jax.random.key(0), logdet="none")[1]

        self._encode, self._decode = jax.jit(encode), jax.jit(decode)
        self._inverse_checked, self._sigmas = jax.jit(inverse_checked), jax.jit(branch_sigmas)

    # ------------------------------------------------------------------ during training
    def run(self, params) -> dict[str, float]:
        """`implicit`: the round trip max |g^{-1}(g(y)) - y| (and its mean) on up to 256
        examples; explicit variants: the decoder's reconstruction RMSE of the encoder mean."""
        params = _local_copy(params)
        x, y = (jnp.asarray(self.arrays[k][:256]) for k in ("x", "y"))
        _, full = self._encode(params, x, y)
        target = self._project(y)
        back = self._decode(params, full, self.num_iters)
        if self.variant == "implicit":
            err = jnp.abs(back - target)
            return {"round_trip_max": float(jnp.max(err)), "round_trip_mean": float(jnp.mean(err))}
        return {"reconstruction_rmse": float(jnp.sqrt(jnp.mean((back - target) ** 2)))}

    # ------------------------------------------------------------------ eval.py
    def evaluate(self, params, out_dir: str) -> tuple[dict[str, Any], list[str]]:
        p = self.name
        params = _local_copy(params)
        write = jax.process_index() == 0
        x, y = (jnp.asarray(self.arrays[k]) for k in ("x", "y"))
        z, full = (np.asarray(a) for a in self._encode(params, x, y))
        mean, std = z.mean(0), z.std(0)
        steps = np.linspace(-self.span, self.span, self.num_steps)
        values = mean[:, None] + steps[None, :] * std[:, None]  # [d, T]
        grid = np.repeat(full[self.points][:, None, None, :], self.num_steps, axis=2)
        grid = np.repeat(grid, self.d, axis=1)  # [P, d, T, D]
        for i in range(self.d):
            grid[:, i, :, i] = values[i]
        flat = grid.reshape(-1, grid.shape[-1])
        metrics: dict[str, Any] = {}
        figures: list[str] = []
        if self.variant == "implicit":
            # One set of points for everything (one compilation per function): data points,
            # the traversal grid, and the data scaled (outside the data, where the penalty
            # never held the branches contractive).
            data = full[: self.cost_points]
            target = np.asarray(self._project(y[: self.cost_points]))
            sets = {"data": data, "traversal": flat} | {
                f"{c}x data": c * data for c in STRESS_SCALES
            }
            cost, decoded_sets, fig = self._inverse_cost(params, sets, out_dir if write else None)
            err = np.abs(decoded_sets["data"] - target)
            metrics[f"{p}/round_trip_max"] = float(err.max())
            metrics[f"{p}/round_trip_mean"] = float(err.mean())
            metrics |= {f"{p}/{k}": v for k, v in cost.items()}
            figures += fig
            decoded = decoded_sets["traversal"]
        else:
            metrics |= {f"{p}/{k}": v for k, v in self.run(params).items()}
            decoded = np.asarray(self._decode(params, jnp.asarray(flat), self.num_iters))
        features = np.asarray(self._unproject(jnp.asarray(decoded))).reshape(*grid.shape[:3], -1)
        metrics[f"{p}/latent_std"] = std.tolist()
        metrics[f"{p}/steps_in_std"] = steps.tolist()
        metrics[f"{p}/examples"] = self.example_ids.tolist()
        if self.lossy:
            metrics[f"{p}/note"] = (
                "decoded through the fixed top-d projection of the targets "
                "(model.target_projection='pca'): directions outside it are held at their mean"
            )
        corr = self._corr(z)
        if "pixels" in self.maps:
            out, fig = self._images(features, steps, corr, out_dir if write else None)
        elif "unmix" in self.maps:
            out, fig = self._factors(features, values, out_dir if write else None)
        else:
            out, fig = {"skipped": (
                "no map from the targets back to pixels or true factors (a user's .npz): "
                "traversal figures not rendered"
            )}, []  # fmt: skip
        metrics |= {f"{p}/{k}": v for k, v in out.items()}
        return metrics, figures + fig

    def _corr(self, z: np.ndarray) -> np.ndarray | None:
        """`[d, k]` Pearson correlations of the latents with the known factors (or None)."""
        return correlation_matrix(self.arrays["s"], z).T if "s" in self.arrays else None

    def _images(self, features, steps, corr, out_dir):
        size = int(self.maps["size"])
        basis = self.maps["pixels"]
        pics = pca_images(features, basis, size=size)  # [P, d, T, S, S, 3]
        data = pca_images(self.arrays["y"][self.points], basis, size=size)  # [P, S, S, 3]
        data = np.repeat(data[:, None, None], self.d, axis=1)  # [P, d, 1, S, S, 3]
        tiles = np.concatenate([data, pics], axis=2).reshape(-1, self.num_steps + 1, size, size, 3)
        gap, block_gap = 1, 4
        grid = viz.image_grid(tiles, gap=gap, block_rows=self.d, block_gap=block_gap)
        out = {"grid_shape": list(grid.shape), "grid_rows": int(tiles.shape[0])}
        if out_dir is None:
            return out, []
        labels, tops, top = [], [], 0
        for ex in self.example_ids:
            for i in range(self.d):
                lab = f"#{ex} z{i}"
                if corr is not None:
                    j = int(np.argmax(np.abs(corr[i])))
                    lab += f" ~ {self.factor_names[j]} ({corr[i, j]:+.2f})"
                labels.append(lab)
                tops.append(top)
                top += size + (block_gap if i == self.d - 1 else gap)
        figs = [
            viz.save_image_grid(grid, os.path.join(out_dir, "traversal_grid.png")),
            viz.plot_image_traversal(
                grid,
                os.path.join(out_dir, "traversal.png"),
                tile=size,
                gap=gap,
                row_labels=labels,
                row_tops=tops,
                col_labels=["data", *(f"{t:+.1f}σ" for t in steps)],
                title=f"{self.variant}: one latent moved per row, decoded "
                + ("by g⁻¹" if self.variant == "implicit" else "by the decoder")
                + " → target PCA → pixels; ~ factor with the largest |corr|",
            ),
        ]
        return out, figs

    def _factors(self, features, values, out_dir):
        kw = {"activation": self.maps["activation"], "slope": self.maps["slope"]}
        s_trav = unmix(features, self.maps["unmix"], **kw)  # [P, d, T, k]
        s_std = self.arrays["s"].std(0)
        moved = (s_trav.max(2) - s_trav.min(2)) / s_std  # [P, d, k]
        response = np.median(moved, axis=0)  # robust to one point decoded off the data
        purity = float(np.mean(response.max(1) / np.maximum(response.sum(1), 1e-12)))
        check = np.abs(
            unmix(self.arrays["y"][self.points], self.maps["unmix"], **kw)
            - self.arrays["s"][self.points]
        ).max()
        out = {
            "factor_response": response.tolist(),
            "factor_purity": purity,
            "unmix_check_max_error": float(check),
        }
        if out_dir is None:
            return out, []
        figs = [
            viz.plot_factor_response(
                response,
                os.path.join(out_dir, "traversal_factors.png"),
                factor_names=self.factor_names,
                title=f"{self.variant}: factor moved per latent (purity {purity:.2f})",
            ),
            viz.plot_factor_traversal(
                values,
                s_trav[0],
                os.path.join(out_dir, "traversal_lines.png"),
                factor_names=self.factor_names,
            ),
        ]
        return out, figs

    def _inverse_cost(self, params, sets, out_dir):
        """Residuals max |g(g^{-1}(z)) - z| by iterations per block on each set of points, the
        time of one inverse at `num_iters`, and the largest branch spectral norm at the decoded
        points; also the decoded sets (at `num_iters`)."""
        names = list(sets)
        bounds = np.cumsum([0] + [len(v) for v in sets.values()])
        zj = jnp.asarray(np.concatenate([sets[k] for k in names]))
        iters = sorted(set(COST_ITERATIONS) | {self.num_iters})
        per_point, seconds = {}, 0.0
        for n in iters:  # n is traced: one compilation for all
            t0 = time.perf_counter()
            v, r = jax.block_until_ready(self._inverse_checked(params, zj, n))
            if n == self.num_iters:
                decoded, seconds = np.asarray(v), time.perf_counter() - t0
            per_point[n] = np.asarray(r)
        sig = np.asarray(self._sigmas(params, jnp.asarray(decoded))).max(-1)  # [B]
        out: dict[str, Any] = {
            "cost_iterations": iters,
            "tolerance": self.tolerance,
            # the inverse at num_iters and one forward pass to check it (1/num_iters of it)
            "inverse_seconds": seconds,
            "inverse_points": int(len(decoded)),
        }
        residuals, decoded_sets = {}, {}
        for i, name in enumerate(names):
            sl = slice(bounds[i], bounds[i + 1])
            key = name.replace(" ", "_")
            res = [float(per_point[n][sl].max()) for n in iters]
            residuals[name] = res
            out[f"residual_{key}"] = res
            ok = [n for n, r in zip(iters, res, strict=True) if r <= self.tolerance]
            out[f"iters_to_tol_{key}"] = ok[0] if ok else None
            out[f"max_branch_sigma_{key}"] = float(sig[sl].max())
            out[f"frac_sigma_ge_1_{key}"] = float(np.mean(sig[sl] >= 1.0))
            out[f"frac_not_converged_{key}"] = float(
                np.mean(per_point[self.num_iters][sl] > self.tolerance)
            )
            decoded_sets[name] = decoded[sl]
        figs = []
        if out_dir is not None:
            figs.append(
                viz.plot_inverse_convergence(
                    iters,
                    residuals,
                    os.path.join(out_dir, "inverse_convergence.png"),
                    tolerance=self.tolerance,
                )
            )
        return out, decoded_sets, figs
