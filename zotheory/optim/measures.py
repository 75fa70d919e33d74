"""Measures of parameters shared by the parameter-free methods and their dense references.

Small pure functions over tensors, imported by :mod:`zotheory.optim.adanaged`,
:mod:`zotheory.optim.parameter_free` and :mod:`zotheory.optim.reference` alike (a leaf: it imports no
optimizer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from zotheory.directions import DirectionFamily
from zotheory.estimators import dtype_resolution

__all__ = ["POWER_STEPS", "power_spectral_norm", "radius_floor", "reps_initial_distance"]


def reps_initial_distance(reps_rel: float, x0_norm: float | Tensor) -> Tensor:
    """DoG's initial movement ``r_eps = reps_rel * (1 + ||x_0||)`` (Ivgi et al. 2023, Sec. 3; ``reps_rel``)."""
    return reps_rel * (1.0 + torch.as_tensor(x0_norm, dtype=torch.float64))


def radius_floor(tensors: Sequence[Tensor], family: DirectionFamily, tau0: float) -> float:
    """Smallest smoothing radius AdaNAGED uses: ``sqrt(eps) * max_l max(mean|x_l|, tau0 typ(z))`` per entry.

    A perturbation of size ``r * typ(z)`` keeps about half of the mantissa bits of an entry of size
    ``mean|x|`` (the classical ``sqrt(eps)`` relative finite-difference step), a factor ``eps^(-1/2)`` above
    the hard resolution limit that :func:`zotheory.estimators.check_radius_resolution` enforces; the
    ``tau0 typ(z)`` term gives an absolute floor where ``x = 0``. Returns the radius (divided by ``typ(z)``).
    """
    dim = sum(t.numel() for t in tensors)
    typ = family.typical_entry(dim)
    floor = 0.0
    for t in tensors:
        if not t.is_floating_point() or t.numel() == 0:
            continue
        scale = max(float(t.detach().abs().float().mean()), tau0 * typ)
        floor = max(floor, math.sqrt(dtype_resolution(t.dtype)) * scale)
    return floor / typ


#: Power iterations of :func:`power_spectral_norm` (from a fixed start: deterministic, stateless).
POWER_STEPS: int = 6


def power_spectral_norm(x: Tensor, steps: int = POWER_STEPS) -> Tensor:
    """Lower estimate of ``||x||_op`` (matrix view ``(shape[0], -1)``) by ``steps`` power iterations on
    ``x^T x`` from the all-ones vector: ``||x v_k||`` with ``v_k`` the normalised iterate, in float64 for
    float64 input and float32 otherwise. Exact for rank one; ``<= sigma_1`` always."""
    mat = x.reshape(x.shape[0], -1)
    mat = mat.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    v = torch.ones(mat.shape[1], dtype=mat.dtype, device=mat.device) / math.sqrt(mat.shape[1])
    for _ in range(steps):
        w = mat.mT @ (mat @ v)
        nw = torch.linalg.vector_norm(w)
        v = torch.where(nw > 0, w / torch.where(nw > 0, nw, torch.ones_like(nw)), v)
    return torch.linalg.vector_norm(mat @ v).double()
