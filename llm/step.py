"""One optimizer step on a language model: its closure, its micro-batches and its forward-pass count.

The one piece of step logic that both training loops use: the plain loop of :mod:`llm.train`
(``python -m llm.finetune``) and :class:`llm.hf_trainer.ZOTrainer` (a ``transformers.Trainer``).

Closure of a zeroth-order step. The ``K`` micro-batches of one step each give a closure that
returns their mean loss (:func:`llm.objective.make_closure`, or the Trainer's ``compute_loss`` in
eval mode). :func:`step_closure` combines them into the one closure the optimizer calls, the
example-weighted mean

    f(x) = sum_k n_k f_k(x) / sum_k n_k        (llm.distributed.accumulating_closure)

so that every evaluation of the step (``x + r z``, ``x - r z``, ...) runs all micro-batches at
the same perturbed parameters: ``K`` micro-batches of ``B`` examples act as one batch of ``K B``
examples, with the activation memory of one micro-batch. Under data parallelism the result is
all-reduced as a scalar (:func:`llm.distributed.data_parallel_closure`), so every rank sees the
loss of the global batch; gradients are never communicated.

Forward-pass accounting (:class:`ForwardCount`).

* ``forward_passes``: forward-equivalents over the step's whole batch. ZO: one per closure call
  (``optimizer.evals_per_step`` per step). FO: one forward plus one backward per closure call,
  the backward counted as two forward passes (:data:`FO_FORWARD_EQUIVALENTS`; Kaplan et al. 2020,
  C_train ~ 6N per token against C_forward ~ 2N).
* ``forward_calls``: calls of the model's forward, one per micro-batch per closure call.
* ``backward_calls``: backward passes (FO only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from llm.distributed import accumulating_closure, data_parallel_closure
from zotheory.paired import PairedClosure

__all__ = [
    "FO_FORWARD_EQUIVALENTS",
    "CountingClosure",
    "ForwardCount",
    "step_closure",
    "paired_step_closure",
    "zo_step",
    "fo_step",
]

LossFn = Callable[[], torch.Tensor]

#: Forward-pass equivalents of one first-order closure call: 1 forward + 1 backward (= 2 forwards).
FO_FORWARD_EQUIVALENTS = 3


class CountingClosure:
    """Wrap a closure and count its calls."""

    def __init__(self, fn: LossFn) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return self.fn()


@dataclass
class ForwardCount:
    """Forward/backward passes of training (module docstring for the convention)."""

    forward_passes: int = 0
    forward_calls: int = 0
    backward_calls: int = 0

    def add_to(self, counters: Any) -> None:
        """Add these counts to the same-named attributes of ``counters`` (a trainer state)."""
        counters.forward_passes += self.forward_passes
        counters.forward_calls += self.forward_calls
        counters.backward_calls += self.backward_calls


def step_closure(
    micro_losses: Sequence[LossFn],
    counts: Sequence[int],
    *,
    data_parallel: bool = False,
    log: Any = None,
) -> LossFn:
    """The closure of one step over ``micro_losses`` (one per micro-batch, each its mean loss over
    ``counts[k]`` examples): the example-weighted mean, all-reduced across ranks with ``data_parallel``
    (``log``: a :class:`llm.distributed.CommunicationLog`). One micro-batch is used as it is."""
    if len(micro_losses) != len(counts) or not micro_losses:
        raise ValueError(
            f"need one example count per micro-batch, got {len(micro_losses)} closures and {len(counts)} counts"
        )
    fn = micro_losses[0] if len(micro_losses) == 1 else accumulating_closure(micro_losses, counts)
    if data_parallel:
        fn = data_parallel_closure(fn, int(sum(counts)), log=log)
    return fn


def paired_step_closure(micro: Sequence[PairedClosure], counts: Sequence[int]) -> PairedClosure:
    """The paired closure of one step over paired micro-batch closures: plain and paired losses are both the
    example-weighted means of :func:`step_closure` (the model is that of the first micro-batch closure)."""
    if len(micro) != len(counts) or not micro:
        raise ValueError(f"need one example count per micro-batch, got {len(micro)} closures and {len(counts)} counts")
    models = {id(c.model) for c in micro}
    if len(models) != 1:
        raise ValueError(f"paired micro-batch closures must share one model, got {len(models)}")
    rows = {
        c.rows for c in micro
    }  # micro-batches of several sizes: None (refused by a model with outputs shared by the batch)
    return PairedClosure(
        micro[0].model,
        step_closure([c.loss for c in micro], counts),
        step_closure([c.pair_loss for c in micro], counts),
        rows.pop() if len(rows) == 1 else None,
    )


def _run_step(optimizer: torch.optim.Optimizer, closure: LossFn) -> torch.Tensor:
    """``optimizer.step(closure)``: the loss tensor the closure returned. torch's stubs type a step closure as
    returning ``float``; zotheory's optimizers and torch's first-order ones return the closure's tensor."""
    return cast(torch.Tensor, optimizer.step(cast(Callable[[], float], closure)))


def zo_step(
    optimizer: torch.optim.Optimizer,
    micro_losses: Sequence[LossFn],
    counts: Sequence[int],
    *,
    data_parallel: bool = False,
    log: Any = None,
) -> tuple[torch.Tensor, ForwardCount]:
    """One zeroth-order ``optimizer.step`` on the closure of :func:`step_closure`; returns the
    optimizer's loss and the passes it cost.

    Paired evaluation (opt-in): when every micro-batch closure is a :class:`zotheory.paired.PairedClosure`
    (:func:`llm.objective.make_paired_closure`), the step's closure is their example-weighted mean as a
    paired closure, so a central estimate runs each ``+``/``-`` pair as one batched forward per micro-batch
    without writing the parameters; each pair counts as two forward passes and one forward call per micro-batch."""
    paired_losses = [fn for fn in micro_losses if isinstance(fn, PairedClosure)]
    if micro_losses and len(paired_losses) == len(micro_losses):
        if data_parallel:
            raise ValueError("paired evaluation is not implemented with data parallelism; use plain closures")
        paired = paired_step_closure(paired_losses, counts)
        loss = _run_step(optimizer, paired)
        calls = paired.calls + paired.pair_calls
        return loss, ForwardCount(
            forward_passes=paired.calls + 2 * paired.pair_calls, forward_calls=calls * len(micro_losses)
        )
    closure = CountingClosure(step_closure(micro_losses, counts, data_parallel=data_parallel, log=log))
    loss = _run_step(optimizer, closure)
    return loss, ForwardCount(forward_passes=closure.calls, forward_calls=closure.calls * len(micro_losses))


def fo_step(optimizer: torch.optim.Optimizer, backward_closure: LossFn) -> tuple[torch.Tensor, ForwardCount]:
    """One first-order ``optimizer.step`` on a closure that runs forward and backward."""
    closure = CountingClosure(backward_closure)
    loss = _run_step(optimizer, closure)
    return loss, ForwardCount(
        forward_passes=FO_FORWARD_EQUIVALENTS * closure.calls, forward_calls=closure.calls, backward_calls=closure.calls
    )
