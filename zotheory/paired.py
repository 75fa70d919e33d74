"""Paired evaluation: the ``+`` and ``-`` forwards of a central difference as one batched forward.

The in-place path of :func:`zotheory.estimators.estimate_gradient` writes ``x + r z`` into the
parameters, runs the model, writes ``x - r z``, runs it again, and folds the restore into the
update. Paired evaluation writes nothing: the batch is given twice (rows ``[0, n)`` are the ``+``
copy, rows ``[n, 2n)`` the ``-`` copy) and every module that owns a perturbed parameter computes
its output with ``W + r z`` on the first half and ``W - r z`` on the second, where ``z`` is
regenerated from ``(step_seed, j, tensor index)`` by the same :class:`~zotheory.directions.DirectionFamily`
(so the directions, and seed replay, are those of the in-place path). One model call returns both
losses, and

    d_j = (f(x + r z_j) - f(x - r z_j)) / (2 r)

is the central difference of Nesterov & Spokoiny (2017) exactly as in :mod:`zotheory.estimators`,
up to the rounding of ``x +- r z`` (formed once each here; the in-place path forms ``x - r z`` as
``(x + r z) - 2 r z``). Two consequences: the parameters are bit-identical before and after
(no restore is needed, half-precision weights do not drift), and a non-finite loss leaves nothing
to undo.

Mechanism: while a :class:`PairedPerturbation` is active, the ``forward`` of every module with a
perturbed direct parameter is replaced on the instance (and put back on exit, also after an
exception). ``nn.Linear`` runs as one ``bmm`` over the two halves with the stacked weights
``[W + r z, W - r z]`` (the same multiply-adds as two forwards, one call). Any other module
(embeddings, LayerNorm, ...) runs its own forward twice, with its parameters transiently rebound to
the ``+`` and ``-`` values, and keeps the matching half of each output; these modules are cheap
next to the linear layers. An output whose first dimension is 1 (a position embedding shared by
the batch) is expanded to both halves.

Outputs must be batch-major: the first dimension of every hooked module's input and output is the
batch (or rows flattened from it in batch-major order), which holds for Hugging Face transformers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from zotheory.directions import DirectionFamily, _shapes
from zotheory.estimators import NonFiniteLossError, ZOEstimate, validate_q, validate_radius

__all__ = ["PairedClosure", "PairedPerturbation", "paired_estimate", "pair_batch_rows"]


def _halves(t: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if t.shape[0] % 2:
        raise ValueError(f"paired evaluation needs an even first dimension in {what}, got shape {tuple(t.shape)}")
    n = t.shape[0] // 2
    return t[:n], t[n:]


def pair_batch_rows(plus: torch.Tensor, minus: torch.Tensor, what: str, rows: int | None = None) -> torch.Tensor:
    """The paired output of a module from its outputs at ``W + r z`` and ``W - r z`` on the whole doubled
    input: the first half of ``plus`` then the second half of ``minus``. An output with a first dimension of 1
    (shared by all rows, e.g. a position embedding) is expanded to ``rows / 2`` rows per half (``rows``: the
    doubled batch's row count, needed only then)."""
    if plus.shape[0] == 1 and rows != 1:
        if rows is None or rows % 2:
            raise ValueError(
                f"{what} is shared by the batch (first dimension 1): paired evaluation needs the doubled batch's "
                f"even row count, got {rows!r}"
            )
        return torch.cat([plus.expand(rows // 2, *plus.shape[1:]), minus.expand(rows // 2, *minus.shape[1:])], dim=0)
    return torch.cat([_halves(plus, what)[0], _halves(minus, what)[1]], dim=0)


def _paired_linear(x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``y[:n] = x[:n] W_+^T + b_+``, ``y[n:] = x[n:] W_-^T + b_-`` as one ``bmm`` (``weights``: ``(2, out, in)``,
    ``bias``: ``(2, out)`` or None)."""
    if x.shape[0] % 2:
        raise ValueError(f"paired evaluation needs an even batch, got a linear-layer input of shape {tuple(x.shape)}")
    lead = x.shape[:-1]
    x2 = x.reshape(2, -1, x.shape[-1])
    y = (
        torch.bmm(x2, weights.transpose(1, 2))
        if bias is None
        else torch.baddbmm(bias.unsqueeze(1), x2, weights.transpose(1, 2))
    )
    return y.reshape(*lead, weights.shape[1])


class PairedPerturbation:
    """Context manager: inside it, the modules of ``model`` evaluate ``params + r z_j`` on the first half of
    every batch and ``params - r z_j`` on the second half, without writing any parameter (module docstring).

    ``params`` is the optimizer's parameter list, in the order that defines the seeds; each must be a direct
    parameter of a module of ``model`` (tied parameters may be owned by several modules). ``rows``: the number of
    rows of the doubled batch, used to expand outputs shared by the batch (:func:`pair_batch_rows`).
    """

    def __init__(
        self,
        model: nn.Module,
        params: Sequence[torch.Tensor],
        family: DirectionFamily,
        *,
        step_seed: int,
        j: int,
        radius: float,
        rows: int | None = None,
    ) -> None:
        validate_radius(radius)
        self.params = list(params)
        self.family = family
        self.step_seed = int(step_seed)
        self.j = int(j)
        self.radius = float(radius)
        self.rows = rows
        self._shapes = _shapes(self.params)
        index = {id(p): i for i, p in enumerate(self.params)}
        self._owners: list[tuple[nn.Module, dict[str, int]]] = []
        owned: set[int] = set()
        for module in model.modules():
            mine = {name: index[id(p)] for name, p in module.named_parameters(recurse=False) if id(p) in index}
            if mine:
                self._owners.append((module, mine))
                owned.update(mine.values())
        missing = [i for i in range(len(self.params)) if i not in owned]
        if missing:
            raise ValueError(
                f"paired evaluation: parameter {missing[0]} (shape {tuple(self._shapes[missing[0]])}) "
                "is not a parameter of "
                "any module of the model, so its perturbation cannot be applied per layer"
            )
        self._saved: list[tuple[nn.Module, Any]] = []

    def _pair(self, i: int) -> torch.Tensor:
        """``[p + r z, p - r z]`` stacked (shape ``(2, *p.shape)``) for tensor ``i``, ``z`` regenerated in the
        parameter's dtype; written straight into one buffer (no further copy)."""
        p = self.params[i].detach()
        z = self.family.tensor_direction(self._shapes, i, self.step_seed, self.j, p.dtype, p.device)
        out = torch.empty((2, *p.shape), dtype=p.dtype, device=p.device)
        torch.add(p, z, alpha=self.radius, out=out[0])
        torch.sub(p, z, alpha=self.radius, out=out[1])
        return out

    def _forward_for(self, module: nn.Module, mine: dict[str, int], original: Callable[..., Any]) -> Callable[..., Any]:
        if type(module).forward is nn.Linear.forward and set(mine) <= {"weight", "bias"}:

            def linear_forward(x: torch.Tensor) -> torch.Tensor:
                weight, bias = module.weight, module.bias
                assert isinstance(weight, torch.Tensor)  # an nn.Linear's
                w = self._pair(mine["weight"]) if "weight" in mine else weight.expand(2, *weight.shape)
                b: torch.Tensor | None = None
                if isinstance(bias, torch.Tensor):
                    b = self._pair(mine["bias"]) if "bias" in mine else bias.expand(2, *bias.shape)
                return _paired_linear(x, w, b)

            return linear_forward

        def generic_forward(*args: Any, **kwargs: Any) -> Any:
            pairs = {name: self._pair(i) for name, i in mine.items()}
            outs = []
            for half in (0, 1):
                saved = {name: module._parameters[name] for name in pairs}
                try:
                    for name, pm in pairs.items():
                        # transient rebinding; the Parameter is not written
                        module._parameters[name] = pm[half]  # type: ignore[assignment]  # a tensor, not a Parameter
                    outs.append(original(*args, **kwargs))
                finally:
                    module._parameters.update(saved)
            if not isinstance(outs[0], torch.Tensor):
                raise TypeError(
                    f"paired evaluation supports modules returning one tensor; {type(module).__name__} "
                    f"returned {type(outs[0]).__name__}"
                )
            return pair_batch_rows(outs[0], outs[1], f"the output of {type(module).__name__}", self.rows)

        return generic_forward

    def __enter__(self) -> PairedPerturbation:
        try:
            for module, mine in self._owners:
                own = module.__dict__.get("forward")
                self._saved.append((module, own))
                module.forward = self._forward_for(module, mine, module.forward)
        except BaseException:
            self._restore()
            raise
        return self

    def _restore(self) -> None:
        for module, own in reversed(self._saved):
            if own is None:
                del module.forward
            else:
                module.forward = own
        self._saved.clear()

    def __exit__(self, *exc: Any) -> None:
        self._restore()


class PairedClosure:
    """A closure that can also evaluate the ``+``/``-`` pair in one call.

    ``loss()``: the plain loss at the current parameters (what every closure returns; the in-place path and
    methods that evaluate other points use it). ``pair_loss()``: the losses of the two halves of the doubled
    batch, a ``(2,)`` tensor, meant to be called inside a :class:`PairedPerturbation` over ``model``; ``rows``: the
    doubled batch's first dimension (for outputs shared by the batch). ``calls`` counts plain calls and
    ``pair_calls`` paired ones (each worth two forward passes).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Callable[[], torch.Tensor],
        pair_loss: Callable[[], torch.Tensor],
        rows: int | None = None,
    ) -> None:
        self.model = model
        self.rows = rows
        self.loss = loss
        self.pair_loss = pair_loss
        self.calls = 0
        self.pair_calls = 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return self.loss()

    def evaluate_pair(self) -> torch.Tensor:
        self.pair_calls += 1
        out = self.pair_loss()
        if not isinstance(out, torch.Tensor) or out.shape != (2,):
            shown = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TypeError(f"pair_loss must return a (2,) tensor of the + and - losses, got {shown}")
        return out.detach().to(torch.float64)


def paired_estimate(
    params: Sequence[torch.Tensor],
    closure: PairedClosure,
    family: DirectionFamily,
    *,
    step_seed: int,
    q: int = 1,
    radius: float = 1e-3,
) -> ZOEstimate:
    """The central estimate of :func:`zotheory.estimators.estimate_gradient` from ``q`` paired evaluations:
    ``g = (c/q) sum_j (f(x + r z_j) - f(x - r z_j)) / (2 r) z_j``, with the parameters never written (so no
    pending restore). ``losses`` holds ``f_+, f_-`` per direction in the in-place order; ``n_evals = 2 q``
    forward-equivalents. A non-finite loss raises :class:`~zotheory.estimators.NonFiniteLossError` (nothing to undo).
    """
    validate_q(q)
    validate_radius(radius)
    if not params:
        raise ValueError("paired_estimate needs at least one tensor to perturb")
    losses = []
    with torch.no_grad():
        for j in range(q):
            with PairedPerturbation(
                closure.model, params, family, step_seed=step_seed, j=j, radius=radius, rows=closure.rows
            ):
                losses.append(closure.evaluate_pair())
    stacked = torch.cat(losses)
    if not bool(torch.isfinite(stacked).all()):
        bad = int(torch.nonzero(~torch.isfinite(stacked))[0])
        raise NonFiniteLossError(
            f"paired evaluation {bad + 1} of {stacked.numel()} returned {float(stacked[bad])}; "
            "parameters were not written"
        )
    pairs = stacked.view(q, 2)
    d = (pairs[:, 0] - pairs[:, 1]) / (2.0 * radius)
    scale = family.scale(sum(math.prod(p.shape) for p in params))
    return ZOEstimate(
        step_seed=step_seed,
        family=family,
        coefficients=d * (scale / q),
        directional_derivatives=d,
        losses=stacked,
        loss=stacked.mean(),
        n_evals=2 * q,
        radius=radius,
    )
