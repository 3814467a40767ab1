"""A Flax NNX module kept as a pure-dict parameter group of the trainer."""

from __future__ import annotations

import jax
from flax import nnx


class PureModule:
    """`make(rngs)` builds the module; `init(key)` returns its parameters as a pure dict (what
    a trainer group holds), `bind(pure)` a module holding them (inside jit). Non-parameter
    state is a constant taken from one concrete instance."""

    def __init__(self, make):
        self._make = make
        self.graphdef, params, self.rest = nnx.split(make(nnx.Rngs(0)), nnx.Param, ...)
        self.abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)

    def init(self, key) -> dict:
        return nnx.to_pure_dict(nnx.split(self._make(nnx.Rngs(key)), nnx.Param, ...)[1])

    def bind(self, pure: dict):
        state = jax.tree.map(lambda a: a, self.abstract)
        nnx.replace_by_pure_dict(state, pure)
        return nnx.merge(self.graphdef, state, jax.tree.map(lambda a: a, self.rest))
