r"""JAGUAR SignSGD and JAGUAR Muon: coordinate memory + sign / Newton–Schulz (arXiv 2506.04430, Algs. 1–2).

The JAGUAR memory (Veprikov et al. 2024; Petrov et al. 2025, Alg. 1 line 8) keeps one number per
coordinate and refreshes only the coordinates sampled at step ``t``:

.. math::
    m^t_i = \beta m^{t-1}_i + (1-\beta)\,\hat g_i \ (i \text{ sampled}),\qquad m^t_i = m^{t-1}_i\ (\text{otherwise})

(``beta = 0``: the original JAGUAR replacement rule ``m_i = hat g_i``). Then
``x <- x - lr sign(m)`` (JAGUAR SignSGD, Alg. 1) or, per matrix, ``X <- X - lr NS(M)`` (JAGUAR Muon,
Alg. 2); vectors, embeddings and the LM head are routed explicitly through parameter groups
(``update`` key, see :mod:`zotheory.optim.muon`). The memory ``m`` is full-size (one number per parameter,
fp32 for half-precision parameters) and declared in :meth:`~zotheory.optim.base.ZOOptimizer.state_bytes`:
the paper's "2d + 1" accounting (``docs/theory.md`` §6.3).

Two estimators, named for what they compute (both 2 closure calls per step):

* ``estimator="coordinate"`` (the paper's): one coordinate ``i_t`` uniform over *all* entries of all
  tensors (:class:`~zotheory.directions.Coordinate`), ``hat g_{i_t} = (f(x + tau e_i) - f(x - tau e_i)) / (2 tau)``.
  With several matrices this is Alg. 2 applied to the concatenated parameter vector: one entry of one matrix
  per step.
* ``estimator="block"`` (the public code's sampling, ``docs/theory.md`` §6.4): in every tensor a random
  block of ``ceil(f rows) x ceil(f cols)`` entries (``ceil(f n)`` for vectors; ``f = block_fraction``, 0.1 in
  the code), all perturbed at once by ``tau s`` with signs ``s`` (:class:`JaguarBlock`). With
  ``delta = (f(x + tau s) - f(x - tau s)) / (2 tau) ~ sum_{k in B} s_k d_k f``, every sampled coordinate
  gets ``hat g_i = s_i delta``. With Rademacher signs (default) ``E[hat g_i | i in B] = d_i f`` (the
  cross terms ``s_i s_k d_k f`` have mean zero, variance ``sum_{k in B, k != i} (d_k f)^2``).
  ``block_signs="ones"`` reproduces the public code's *block sum*: all signs +1, so
  ``hat g_i = sum_{k in B} d_k f`` for every ``i`` of the block, biased by the other partial
  derivatives of the block (``docs/theory.md`` §1.5) — offered to reproduce the code, not recommended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Unpack

import torch
from torch import Tensor

from zotheory.directions import Coordinate, DirectionFamily, block_selection, draw_generator, mix_seed
from zotheory.estimators import ZOEstimate
from zotheory.lmo import CUBIC
from zotheory.optim.base import ZOOptimizer, _state_dtype, validate_unit_interval
from zotheory.optim.config import EstimatorOptions
from zotheory.optim.muon import apply_update_rules_, validate_ns, validate_ns_dtype, validate_update_group

__all__ = [
    "ESTIMATORS",
    "JaguarBlock",
    "JaguarMuon",
    "JaguarSignSGD",
    "jaguar_block_update_",
    "jaguar_coordinate_update_",
]

ESTIMATORS: tuple[str, ...] = ("coordinate", "block")


# ---------------------------------------------------------------------------------------------- pure maths
def jaguar_coordinate_update_(memory: Tensor, offset: int, estimate: Tensor, beta: float) -> None:
    """``m_i <- beta m_i + (1 - beta) hat g_i`` for the single flat ``offset`` of ``memory`` (Alg. 1, line 8)."""
    flat = memory.view(-1)
    flat[offset] = flat[offset] * beta + estimate.to(flat.dtype) * (1.0 - beta)


def jaguar_block_update_(memory: Tensor, rows: Tensor, cols: Tensor | None, estimates: Tensor, beta: float) -> None:
    """``m_B <- beta m_B + (1 - beta) hat g_B`` on the block ``rows x cols`` (or the entries ``rows`` of a
    vector) of ``memory``; ``estimates`` has the block's shape."""
    if cols is None:
        flat = memory.view(-1)
        flat[rows] = flat[rows] * beta + estimates.to(flat.dtype) * (1.0 - beta)
    else:
        view = memory.view(memory.shape[0], -1)
        index = (rows.unsqueeze(1), cols.unsqueeze(0))
        view[index] = view[index] * beta + estimates.to(view.dtype) * (1.0 - beta)


# ---------------------------------------------------------------------------------------------- directions
class JaguarBlock(DirectionFamily):
    """Signs on a random block of every tensor, *not* rescaled (JAGUAR's public block sampling).

    Block: :func:`zotheory.directions.block_selection` (``ceil(f rows) x ceil(f cols)`` for matrices,
    ``ceil(f n)`` entries for vectors). Entries: ``+-1`` Rademacher signs (``signs="rademacher"``) or all
    ``+1`` (``signs="ones"``, the code's block sum), so each entry is perturbed by exactly ``+-tau``.

    This family is meant for the JAGUAR memory, not for unbiased gradient estimates: ``E[z z^T] = diag(p_l)``
    (``p_l`` the inclusion probability of an entry of tensor ``l``), so ``scale`` returns 1 and
    ``<g, z> z`` estimates ``diag(p) g``. :meth:`~zotheory.estimators.ZOEstimate.materialize` of a
    JAGUAR estimate therefore returns exactly the coordinates' estimates ``hat g_i = s_i delta`` on the
    blocks and 0 elsewhere.
    """

    name = "jaguar_block"
    SIGNS: tuple[str, ...] = ("rademacher", "ones")

    def __init__(self, fraction: float = 0.1, signs: str = "rademacher") -> None:
        if not isinstance(fraction, (int, float)) or not math.isfinite(fraction) or not 0.0 < fraction <= 1.0:
            raise ValueError(f"block_fraction must lie in (0, 1], got {fraction!r}")
        if signs not in self.SIGNS:
            raise ValueError(f"unknown block_signs {signs!r}; choose one of {list(self.SIGNS)}")
        self.fraction = float(fraction)
        self.signs = signs

    def scale(self, dim: int) -> float:
        return 1.0

    def block(
        self, shape: torch.Size, index: int, step_seed: int, j: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """``(rows, cols or None, values)`` of tensor ``index``: the block and its signs (``values``
        shaped ``(len(rows), len(cols))`` or ``(len(rows),)``)."""
        gen = draw_generator(mix_seed(step_seed, j), index, device)
        rows, cols, _ = block_selection(shape, self.fraction, gen, device)
        size = (rows.numel(), cols.numel()) if cols is not None else (rows.numel(),)
        if self.signs == "ones":
            return rows, cols, torch.ones(size, dtype=dtype, device=device)
        bits = torch.randint(0, 2, size, generator=gen, device=device, dtype=torch.int8)
        return rows, cols, bits.to(dtype).mul_(2).sub_(1)

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        shape = shapes[index]
        rows, cols, values = self.block(shape, index, step_seed, j, dtype, device)
        z = torch.zeros(shape, dtype=dtype, device=device)
        if cols is None:
            z.view(-1)[rows] = values
        else:
            z.view(shape[0], -1)[rows.unsqueeze(1), cols.unsqueeze(0)] = values
        return z

    def add_(self, tensors, step_seed, j, alpha):
        alphas = list(alpha) if isinstance(alpha, Sequence) else [alpha] * len(tensors)
        if len(alphas) != len(tensors):
            raise ValueError(f"got {len(alphas)} per-tensor step factors for {len(tensors)} tensors")
        for i, (p, a) in enumerate(zip(tensors, alphas, strict=False)):
            if not isinstance(a, Tensor) and a == 0:
                continue
            rows, cols, values = self.block(p.shape, i, step_seed, j, p.dtype, p.device)
            values = values.mul_(a.to(values.dtype)) if isinstance(a, Tensor) else values.mul_(float(a))
            if cols is None:
                p.view(-1).index_add_(0, rows, values)
            else:
                view = p.view(p.shape[0], -1)
                view[rows.unsqueeze(1), cols.unsqueeze(0)] += values

    def __repr__(self) -> str:
        return f"JaguarBlock(fraction={self.fraction}, signs={self.signs!r})"


def _jaguar_family(estimator: str, block_fraction: float, block_signs: str) -> DirectionFamily:
    if estimator == "coordinate":
        return Coordinate()
    if estimator == "block":
        return JaguarBlock(block_fraction, block_signs)
    raise ValueError(f"unknown JAGUAR estimator {estimator!r}; choose one of {list(ESTIMATORS)}")


# ---------------------------------------------------------------------------------------------- optimizers
class _Jaguar(ZOOptimizer):
    """Shared machinery: the estimator choice, the full-size memory, the per-group update rule."""

    rules: tuple[str, ...] = ("sign",)

    fixed_options = frozenset({"q", "directions", "scheme"})

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        estimator: str,
        block_fraction: float,
        block_signs: str,
        **options: Unpack[EstimatorOptions],
    ) -> None:
        family = _jaguar_family(estimator, block_fraction, block_signs)
        self.estimator = estimator
        config = self.estimator_config(options, q=1, directions=family, scheme="central")
        super().__init__(params, defaults, config=config)

    @property
    def folds_restore(self) -> bool:
        """A policy's dense estimate folds the restore; a coordinate or block is restored first (cheap)."""
        return self.policy is not None

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        validate_unit_interval("beta", group["beta"])
        if "update" in group:
            validate_update_group(group, self.rules)
        if "ns_steps" in group:
            group["ns_coefficients"], group["ns_steps"] = validate_ns(group["ns_coefficients"], group["ns_steps"])
        if "ns_dtype" in group:
            validate_ns_dtype(group["ns_dtype"])

    def memories(self) -> list[Tensor]:
        """The memory ``m`` of every parameter (allocated as zeros, fp32 for half-precision parameters)."""
        out = []
        for p in self.zo_params():
            state = self.state[p]
            if "memory" not in state:
                state["memory"] = torch.zeros(p.shape, dtype=_state_dtype(p), device=p.device)
            out.append(state["memory"])
        return out

    def _update(self, est: ZOEstimate) -> None:
        params = self.zo_params()
        memories = self.memories()
        groups = self.zo_param_groups()
        if self.policy is not None:
            # a policy's directions are dense: every coordinate is "sampled", Alg. 1's memory rule on the
            # full support is the EMA of the policy's estimates
            for i, _, group, g in self.dense_estimates(est):
                memories[i].mul_(group["beta"]).add_(g, alpha=1.0 - group["beta"])
            self._apply_update(params, memories, groups)
            return
        delta = est.directional_derivatives[0]
        shapes = tuple(p.shape for p in params)
        if isinstance(self.directions, Coordinate):
            i, offset = self.directions.location(shapes, est.step_seed, 0)
            jaguar_coordinate_update_(memories[i], offset, delta, groups[i]["beta"])
        else:
            family: JaguarBlock = self.directions  # type: ignore[assignment]
            for i, (m, group) in enumerate(zip(memories, groups, strict=False)):
                rows, cols, signs = family.block(shapes[i], i, est.step_seed, 0, m.dtype, m.device)
                jaguar_block_update_(m, rows, cols, signs.mul_(delta.to(m.dtype)), group["beta"])
        self._apply_update(params, memories, groups)

    @staticmethod
    def _apply_update(params: list[Tensor], memories: list[Tensor], groups: list[dict[str, Any]]) -> None:
        """``x <- x - lr rule(m)`` with each group's rule (sign / Newton–Schulz / l2); Newton–Schulz runs
        on stacks of equal-shape memories (:func:`zotheory.optim.muon.apply_update_rules_`)."""
        apply_update_rules_(zip(params, groups, memories, strict=False), _RULE_DEFAULTS)


#: The update settings of a group that does not name them (JAGUAR SignSGD groups: sign; Alg. 2's cubic, K = 10).
_RULE_DEFAULTS: dict[str, Any] = {
    "update": "sign",
    "ns_coefficients": CUBIC,
    "ns_steps": 10,
    "shape_scale": False,
    "ns_dtype": "auto",
}


class JaguarSignSGD(_Jaguar):
    r"""JAGUAR SignSGD (Petrov et al., arXiv 2506.04430, Alg. 1): coordinate memory, then sign descent.

    .. math::
        m^t_i = \beta m^{t-1}_i + (1-\beta)\hat g_i\ (i\ \text{sampled}),\qquad
        x^{t+1} = x^t - \gamma\,\mathrm{sign}(m^t)

    The sign is taken over the whole memory, so coordinates sampled earlier keep moving (Alg. 1; sign(0) = 0
    leaves never-sampled coordinates in place). ``beta = 0`` is the original JAGUAR replacement; the paper's
    theory wants ``beta`` close to 1 (Cor. 3.6: ``1 - T^{-1/2}``), its reported LLM tuning used 0.01.
    Estimators: module docstring. 2 closure calls per step; memory: one parameter-sized buffer.

    Args:
        lr: ``gamma``; beta: memory constant in [0, 1); estimator: ``"coordinate"`` or ``"block"``;
        block_fraction / block_signs: the block estimator's settings; eps: ``tau``; policy: a direction
        policy (:mod:`zotheory.policies`) in place of the coordinate/block estimator: its directions are
        dense, so every coordinate counts as sampled and the memory becomes the EMA
        ``m <- beta m + (1 - beta) g_hat`` of the policy's estimates (Alg. 1's rule on the full support;
        our extension, not in the paper); the rest as in :class:`~zotheory.optim.base.ZOOptimizer`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        beta: float = 0.9,
        estimator: str = "coordinate",
        block_fraction: float = 0.1,
        block_signs: str = "rademacher",
        **options: Unpack[EstimatorOptions],
    ) -> None:
        super().__init__(
            params,
            dict(lr=lr, beta=beta),
            estimator=estimator,
            block_fraction=block_fraction,
            block_signs=block_signs,
            **options,
        )


class JaguarMuon(_Jaguar):
    r"""JAGUAR Muon (Petrov et al., arXiv 2506.04430, Alg. 2): coordinate memory per matrix, then Newton–Schulz.

    .. math::
        M^t_{ij} = \beta M^{t-1}_{ij} + (1-\beta)\hat g_{ij}\ ((i,j)\ \text{sampled}),\qquad
        X^{t+1} = X^t - \gamma\,\mathrm{NS}(M^t)

    Newton–Schulz defaults to the paper's cubic ``A <- 1.5 A - 0.5 A A^T A`` with ``K = 10`` steps
    (``ns_coefficients=CUBIC, ns_steps=10``); the public code uses Muon's quintic
    ``(3.4445, -4.7750, 2.0315)`` (pass :data:`zotheory.lmo.MUON_QUINTIC`, 10 steps in JAGUAR-Muon v2/v3).
    Routing (``update`` group key, required to be explicit for non-matrices): ``"muon"`` (default; matrices
    only), ``"sign"`` (JAGUAR SignSGD on that group: the code's choice for 1-D tensors), ``"l2"``. Build
    the groups with :func:`zotheory.optim.muon.muon_param_groups`. ``shape_scale`` adds Muon's
    ``max(1, rows/cols)^(1/2)`` (not used by JAGUAR). ``ns_dtype``: the Newton–Schulz arithmetic
    (:data:`zotheory.optim.muon.NS_DTYPES`; ``"auto"`` = bf16 on a GPU). Memory: one parameter-sized buffer.
    """

    rules = ("muon", "sign", "l2")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        beta: float = 0.9,
        update: str = "muon",
        ns_coefficients: Sequence[float] = CUBIC,
        ns_steps: int = 10,
        shape_scale: bool = False,
        ns_dtype: str = "auto",
        estimator: str = "coordinate",
        block_fraction: float = 0.1,
        block_signs: str = "rademacher",
        **options: Unpack[EstimatorOptions],
    ) -> None:
        coeffs, steps = validate_ns(ns_coefficients, ns_steps)
        super().__init__(
            params,
            dict(
                lr=lr,
                beta=beta,
                update=update,
                ns_coefficients=coeffs,
                ns_steps=steps,
                shape_scale=shape_scale,
                ns_dtype=ns_dtype,
            ),
            estimator=estimator,
            block_fraction=block_fraction,
            block_signs=block_signs,
            **options,
        )
