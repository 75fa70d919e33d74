r"""The norms in which the problems state their smoothness constants, and their duals.

A point (or a gradient) of a problem is a list of blocks ``[x_1, ..., x_k]`` (vectors and
matrices). The *smoothness norm* of a problem names the norm ``||.||`` on such lists for
which the problem's ``L`` satisfies

.. math::  \|\nabla f(x) - \nabla f(y)\|_* \le L\,\|x - y\| \quad\text{for all } x, y,

with ``||.||_*`` the dual norm, ``||g||_* = sup_{||s|| <= 1} <g, s>``
(``docs/theory.md`` §4). The names:

===========  ==============================================  ===============================
name         ``||x||``                                       dual ``||g||_*``
===========  ==============================================  ===============================
``l2``       Euclidean norm of all entries (Frobenius)       same
``linf``     max-abs entry over all blocks                   sum of absolute entries (l1)
``l1``       sum of absolute entries                         max-abs entry (linf)
``spectral`` ``max_l ||X_l||_op`` (every block a matrix)     ``sum_l ||G_l||_nuc``
``product``  ``max_l ||x_l||_(l)``, per-block norms given    ``sum_l ||g_l||_(l),*``
===========  ==============================================  ===============================

The max-of-blocks (product) norm is the layer-wise geometry of Scion/Gluon; its dual is the
sum of the blocks' dual norms (``docs/theory.md`` §4, product row; §5.30).

These functions are for verification and reports: they compute in float64 and return
Python floats. The optimizers' LMOs live in ``zotheory.lmo``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

BLOCK_NORMS = ("l2", "frobenius", "linf", "l1", "spectral", "nuclear")
SMOOTHNESS_NORMS = ("l2", "linf", "l1", "spectral", "product")
DUAL_OF = {
    "l2": "l2",
    "frobenius": "frobenius",
    "linf": "l1",
    "l1": "linf",
    "spectral": "nuclear",
    "nuclear": "spectral",
}


def block_norm(x: torch.Tensor, name: str) -> float:
    """Norm ``name`` of one block (``spectral``/``nuclear`` need a 2-D block)."""
    x = x.detach().to(torch.float64)
    if name in ("l2", "frobenius"):
        return float(torch.linalg.vector_norm(x))
    if name == "linf":
        return float(x.abs().max()) if x.numel() else 0.0
    if name == "l1":
        return float(x.abs().sum())
    if name in ("spectral", "nuclear"):
        if x.dim() != 2:
            raise ValueError(f"the {name} norm needs a matrix block, got shape {tuple(x.shape)}")
        s = torch.linalg.svdvals(x)
        return float(s.max()) if name == "spectral" else float(s.sum())
    raise ValueError(f"unknown block norm {name!r}; valid: {list(BLOCK_NORMS)}")


def norm(xs: Sequence[torch.Tensor], name: str, block_norms: Sequence[str] | None = None) -> float:
    """Norm ``name`` (see the module table) of the list of blocks ``xs``."""
    xs = list(xs)
    if name == "l2":
        return float(sum(block_norm(x, "l2") ** 2 for x in xs) ** 0.5)
    if name == "linf":
        return max(block_norm(x, "linf") for x in xs)
    if name == "l1":
        return sum(block_norm(x, "l1") for x in xs)
    if name == "spectral":
        return max(block_norm(x, "spectral") for x in xs)
    if name == "product":
        bn = _block_norm_names(xs, block_norms)
        return max(block_norm(x, b) for x, b in zip(xs, bn, strict=False))
    raise ValueError(f"unknown norm {name!r}; valid: {list(SMOOTHNESS_NORMS)}")


def dual_norm(gs: Sequence[torch.Tensor], name: str, block_norms: Sequence[str] | None = None) -> float:
    """Dual of the norm ``name`` evaluated at the list of blocks ``gs``."""
    gs = list(gs)
    if name == "l2":
        return norm(gs, "l2")
    if name == "linf":
        return norm(gs, "l1")
    if name == "l1":
        return norm(gs, "linf")
    if name == "spectral":
        return sum(block_norm(g, "nuclear") for g in gs)
    if name == "product":
        bn = _block_norm_names(gs, block_norms)
        return sum(block_norm(g, DUAL_OF[b]) for g, b in zip(gs, bn, strict=False))
    raise ValueError(f"unknown norm {name!r}; valid: {list(SMOOTHNESS_NORMS)}")


def _block_norm_names(xs: Sequence[torch.Tensor], block_norms: Sequence[str] | None) -> list[str]:
    if block_norms is None or len(block_norms) != len(xs):
        raise ValueError(
            f"the product norm needs one block norm per block: {len(xs)} blocks, block_norms={block_norms!r}"
        )
    for b in block_norms:
        if b not in DUAL_OF:
            raise ValueError(f"unknown block norm {b!r}; valid: {list(BLOCK_NORMS)}")
    return list(block_norms)
