"""DisNCL's network: a dual encoder whose codes are split into a modality-invariant (MII) and a
modality-exclusive (MEI) part per modality, plus the critics of its own MI terms.

For modality m with backbone code h_m (the pooled, unit-norm output of `RegionEncoder` or
`GRUTextEncoder`):
  s_m = L2(W^s_m h_m)    MII code, used for cross-modal similarity (`s_v @ s_t.T`)
  with `decorrelation="regress"`: s_m = L2(u_m - x_m B_m), u_m = W^s_m h_m, B_m the
                         least-squares coefficients of u_m on x_m (fitted by the task);
  with `decorrelation="predict"`: s_m = L2(u_m C_m), C_m the least-squares coefficients of
                         the partner's u on u_m over clean pairs (fitted by the task)
  with `decorrelation="exclusive"`: x_m = x~_m, the raw MEI code L2(a_m) without its
                         `exclusive_k` canonical variates most correlated with the partner's MII
                         code, and s_m = L2(u_m - v_m G_m), v_m the remaining (exclusive)
                         variates, G_m their least-squares coefficients for u_m: all from
                         running moments the module holds (`stat_*`, an exact running average
                         kept by the task; `jaxmr.losses.exclusive_residual`), applied as
                         `gate_on` (0 during warm-up, then 1) says
  x_m = L2(a_m), a_m = W^x_m h_m + b  MEI code (unit norm like s_m: a bounded scale keeps CLUB's
                         Gaussian q(x|s) fittable; unnormalised codes grew until its NLL
                         reached ~70 nats per modality)
  with `mei_decorrelation="regress"`: x_m = L2(L2(a_m) - s_m D_m), D_m the least-squares
                         coefficients of L2(a_m) on the stop-gradient s_m (fitted by the task):
                         the MEI code keeps only what the MII code does not linearly carry
  critic_m(x, h) = (U_m x) . h    separable critic for the InfoNCE bound on I(x_m; h_m)
The heads are linear so that what the codes carry is decided by the objective, not by extra
capacity (docs/disncl.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmr.losses.decorrelation import exclusive_residual, linear_residual
from jaxmr.models.retrieval import GRUTextEncoder, RegionEncoder, l2_normalise

DECORRELATIONS = ("none", "regress", "predict", "exclusive")
# Names of the running moments of `decorrelation="exclusive"` (a leaf whose name starts with
# `stat_` or `gate_` is not trained by gradient: the task's optimiser sets it, see
# `jaxmr.tasks.retrieval.disncl.exclusive_moments`).
EXCLUSIVE_STATS = ("stat_count", "stat_mean_x", "stat_mean_u", "stat_mean_p", "stat_xx",
                   "stat_pp", "stat_xp", "stat_xu")  # fmt: skip
MEI_DECORRELATIONS = ("none", "regress")


class _Heads(nnx.Module):
    def __init__(
        self,
        dim: int,
        mii_dim: int,
        mei_dim: int,
        *,
        decorrelation: str = "none",
        mei_decorrelation: str = "none",
        decor_scale: float = 10.0,
        exclusive_k: int = 0,
        exclusive_ridge: float = 1e-3,
        rngs: nnx.Rngs,
    ):
        self.mii = nnx.Linear(dim, mii_dim, rngs=rngs)
        self.mei = nnx.Linear(dim, mei_dim, rngs=rngs)
        self.critic = nnx.Linear(mei_dim, dim, use_bias=False, rngs=rngs)
        self.decorrelation = decorrelation
        if decorrelation == "regress":
            # Regression of the pre-normalisation MII code u on the MEI code x, fitted by the
            # task's least-squares term on stop-gradient codes; zero at the start (s as
            # without it). Parametrised as decor_scale * param so that Adam's ~lr steps per
            # entry can track coefficients of order 0.1-1 within the schedule.
            self.decor_coef = nnx.Param(jnp.zeros((mei_dim, mii_dim), jnp.float32))
            self.decor_intercept = nnx.Param(jnp.zeros((mii_dim,), jnp.float32))
            self.decor_scale = float(decor_scale)
        elif decorrelation == "predict":
            # Regression of the *other* modality's u on this one's u (clean pairs), fitted
            # the same way; identity at the start (s as without it).
            self.decor_coef = nnx.Param(jnp.zeros((mii_dim, mii_dim), jnp.float32))
            self.decor_intercept = nnx.Param(jnp.zeros((mii_dim,), jnp.float32))
            self.decor_scale = float(decor_scale)
        elif decorrelation == "exclusive":
            # Running (uncentred) moments of the raw MEI code x, the MII head's output u and
            # the partner modality's MII code p, and the count that de-biases them (all zero
            # at the start); the gate of the removal (0: s and x as without it).
            z = lambda *shape: nnx.Param(jnp.zeros(shape, jnp.float32))  # noqa: E731
            self.stat_count = z()
            self.stat_mean_x, self.stat_mean_u = z(mei_dim), z(mii_dim)
            self.stat_mean_p = z(mii_dim)
            self.stat_xx, self.stat_pp = z(mei_dim, mei_dim), z(mii_dim, mii_dim)
            self.stat_xp, self.stat_xu = z(mei_dim, mii_dim), z(mei_dim, mii_dim)
            self.gate_on = z()
            self.exclusive_k = int(exclusive_k)
            self.exclusive_ridge = float(exclusive_ridge)
        self.mei_decorrelation = mei_decorrelation
        if mei_decorrelation == "regress":
            # Regression of the pre-normalisation MEI code a on the (stop-gradient) MII code
            # s, fitted by the task's least-squares term; zero at the start (x as without it).
            self.mei_decor_coef = nnx.Param(jnp.zeros((mii_dim, mei_dim), jnp.float32))
            self.mei_decor_intercept = nnx.Param(jnp.zeros((mei_dim,), jnp.float32))
            self.decor_scale = float(decor_scale)

    def mei_decor(self) -> tuple[jax.Array, jax.Array]:
        """(coef, intercept) of the fitted regression of a on s [mii, mei] (coef = scale *
        param), for `mei_decorrelation="regress"`."""
        return self.decor_scale * self.mei_decor_coef[...], self.mei_decor_intercept[...]

    def mei_code(self, h: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a, x): the MEI head's output a = W^x h + b and the MEI code x = L2(a), or with
        `mei_decorrelation="regress"` a = L2(W^x h + b) and x = L2(a - stop_gradient(s) D)
        with D held fixed here (trained only by the task's least-squares fit): nothing the
        MII code linearly carries stays in the MEI code, and the MEI objectives do not reach
        s through it. a is unit-norm there so that the fit's error stays bounded: on the raw
        head output, whose scale nothing fixes, it grew to ~30 and its gradient (10x the
        default's) dominated the clipped global norm, throttling matching
        (docs/disncl.md)."""
        a = self.mei(h)
        if self.mei_decorrelation == "regress":
            a = l2_normalise(a)
            coef, _ = self.mei_decor()
            a_res = linear_residual(a, jax.lax.stop_gradient(s), jax.lax.stop_gradient(coef))
            return a, l2_normalise(a_res)
        return a, l2_normalise(a)

    def decor(self) -> tuple[jax.Array, jax.Array]:
        """(coef, intercept) of the fitted regression: of u on x [mei, mii] ("regress"), or
        of the partner's u on this u [mii, mii] = identity + scale * param ("predict")."""
        coef = self.decor_scale * self.decor_coef[...]
        if self.decorrelation == "predict":
            coef = coef + jnp.eye(coef.shape[0], dtype=coef.dtype)
        return coef, self.decor_intercept[...]

    def exclusive_moments(self) -> dict[str, jax.Array]:
        """The running moments as means and covariances (stop-gradient)."""
        st = {k: jax.lax.stop_gradient(getattr(self, k)[...]) for k in EXCLUSIVE_STATS}
        c = jnp.maximum(st["stat_count"], 1e-6)
        mx, mu, mp = st["stat_mean_x"] / c, st["stat_mean_u"] / c, st["stat_mean_p"] / c
        return {
            "mean_x": mx,
            "cov_xx": st["stat_xx"] / c - jnp.outer(mx, mx),
            "cov_pp": st["stat_pp"] / c - jnp.outer(mp, mp),
            "cov_xp": st["stat_xp"] / c - jnp.outer(mx, mp),
            "cov_xu": st["stat_xu"] / c - jnp.outer(mx, mu),
        }

    def exclusive_codes(self, u: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(s, x~, canonical correlations): s = L2(u - g v G), x~ = x + g (mean + v C - x)
        with g = `gate_on` (stop-gradient), from `exclusive_residual` on the running moments.
        The moments, G and C are held fixed here; the matching gradient reaches u and x."""
        mom = self.exclusive_moments()
        r, x_excl, corr = exclusive_residual(
            u, x, **mom, k=self.exclusive_k, ridge=self.exclusive_ridge
        )
        g = jax.lax.stop_gradient(self.gate_on[...])
        return l2_normalise(u + g * (r - u)), x + g * (x_excl - x), corr

    def __call__(self, h: jax.Array) -> dict[str, jax.Array]:
        u = self.mii(h)
        if self.decorrelation == "exclusive":
            x_raw = l2_normalise(self.mei(h))
            s, x, corr = self.exclusive_codes(u, x_raw)
            return {"h": h, "u": u, "s": s, "x": x, "x_raw": x_raw, "corr": corr}
        if self.mei_decorrelation == "regress":
            s = l2_normalise(u)
            a, x = self.mei_code(h, s)
            return {"h": h, "u": u, "s": s, "a": a, "x": x}
        x = l2_normalise(self.mei(h))
        if self.decorrelation == "regress":
            coef, _ = self.decor()
            # Exact linear decorrelation: s is the residual of u on x under the fitted
            # coefficients (held fixed here, trained only by the least-squares term);
            # gradients reach u and x, so matching pushes x off the content s needs.
            r = linear_residual(u, x, jax.lax.stop_gradient(coef))
            return {"h": h, "u": u, "s": l2_normalise(r), "x": x}
        if self.decorrelation == "predict":
            coef, _ = self.decor()
            # s is this modality's linear prediction of the partner's u: directions of u
            # uncorrelated with the partner (exclusive content) get zero least-squares
            # coefficients, whatever their scale. Coefficients fixed here, as above.
            p = u @ jax.lax.stop_gradient(coef)
            return {"h": h, "u": u, "s": l2_normalise(p), "x": x}
        return {"h": h, "u": u, "s": l2_normalise(u), "x": x}


class DisNCLNet(nnx.Module):
    """Backbone encoders + MII/MEI heads per modality.

    `encode_images` / `encode_texts` return the codes used for similarity: the MII code, or
    the whole backbone code when `similarity="full"` (an ablation). `image_codes` /
    `text_codes` return {h, s, x} for the losses.
    """

    def __init__(
        self,
        feature_dim: int,
        vocab_size: int,
        embed_dim: int,
        *,
        mii_dim: int,
        mei_dim: int,
        word_dim: int = 300,
        pool: str = "mean",
        similarity: str = "mii",
        decorrelation: str = "none",
        mei_decorrelation: str = "none",
        decor_scale: float = 10.0,
        exclusive_k: int = 0,
        exclusive_ridge: float = 1e-3,
        rngs: nnx.Rngs,
    ):
        if similarity not in ("mii", "full"):
            raise ValueError(f"similarity must be 'mii' or 'full', got {similarity!r}")
        if decorrelation not in DECORRELATIONS:
            raise ValueError(
                f"config.model.mii_decorrelation must be one of {DECORRELATIONS}, got "
                f"{decorrelation!r}"
            )
        if mei_decorrelation not in MEI_DECORRELATIONS:
            raise ValueError(
                f"config.model.mei_decorrelation must be one of {MEI_DECORRELATIONS}, got "
                f"{mei_decorrelation!r}"
            )
        if mei_decorrelation != "none" and decorrelation != "none":
            raise ValueError(
                "config.model.mei_decorrelation and config.model.mii_decorrelation cannot both "
                f"be on (got {mei_decorrelation!r} and {decorrelation!r}): each code would be "
                "the residual of the other"
            )
        bad_k = not isinstance(exclusive_k, int) or isinstance(exclusive_k, bool)
        if decorrelation == "exclusive" and (bad_k or not 0 <= exclusive_k < mei_dim):
            raise ValueError(
                f"config.model.exclusive_k must be in [0, mei_dim = {mei_dim}), got {exclusive_k!r}"
            )
        if decorrelation == "exclusive" and not float(exclusive_ridge) > 0:
            raise ValueError(f"config.model.exclusive_ridge must be > 0, got {exclusive_ridge!r}")
        self.image = RegionEncoder(feature_dim, embed_dim, rngs=rngs)
        self.text = GRUTextEncoder(vocab_size, embed_dim, word_dim=word_dim, pool=pool, rngs=rngs)
        dec = dict(
            decorrelation=decorrelation,
            mei_decorrelation=mei_decorrelation,
            decor_scale=decor_scale,
            exclusive_k=exclusive_k,
            exclusive_ridge=exclusive_ridge,
        )
        self.image_heads = _Heads(embed_dim, mii_dim, mei_dim, **dec, rngs=rngs)
        self.text_heads = _Heads(embed_dim, mii_dim, mei_dim, **dec, rngs=rngs)
        self.decorrelation = decorrelation
        self.mei_decorrelation = mei_decorrelation
        self.similarity = similarity

    def image_codes(self, regions: jax.Array) -> dict[str, jax.Array]:
        return self.image_heads(self.image(regions))

    def text_codes(self, tokens: jax.Array, lengths: jax.Array) -> dict[str, jax.Array]:
        return self.text_heads(self.text(tokens, lengths))

    def heads(self, modality: str) -> _Heads:
        return self.image_heads if modality == "image" else self.text_heads

    def critic_scores(self, x: jax.Array, h: jax.Array, modality: str) -> jax.Array:
        """[N, N] critic scores (U x_i) . h_j of the InfoNCE bound on I(x_m; h_m)."""
        heads = self.image_heads if modality == "image" else self.text_heads
        return heads.critic(x) @ h.T

    def encode_images(self, regions: jax.Array) -> jax.Array:
        c = self.image_codes(regions)
        return c["s"] if self.similarity == "mii" else c["h"]

    def encode_texts(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
        c = self.text_codes(tokens, lengths)
        return c["s"] if self.similarity == "mii" else c["h"]


__all__ = ["DisNCLNet"]
