"""The shared step of both training loops (llm.step): micro-batch accumulation under one perturbation and
the forward-pass count."""

from __future__ import annotations

import pytest
import torch

from llm.step import FO_FORWARD_EQUIVALENTS, ForwardCount, fo_step, step_closure, zo_step
from zotheory.optim import ZOSGD


def _problem() -> tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(12, generator=gen, dtype=torch.float64)
    w = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    return w, x, y


def _mse(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    return lambda: torch.mean((x @ w - y) ** 2)


def test_micro_batches_act_as_one_batch_under_one_perturbation() -> None:
    """Three unequal micro-batches give the same step as the whole batch: same loss, same update (to rounding),
    three forward calls per closure call and one forward pass over the whole batch per call."""
    w_full, x, y = _problem()
    w_micro = torch.nn.Parameter(w_full.detach().clone())
    full, micro = ZOSGD([w_full], lr=0.1, eps=1e-4, seed=5), ZOSGD([w_micro], lr=0.1, eps=1e-4, seed=5)
    cuts = [(0, 3), (3, 10), (10, 12)]
    for _ in range(3):
        loss_full, count_full = zo_step(full, [_mse(w_full, x, y)], [12])
        loss_micro, count_micro = zo_step(
            micro, [_mse(w_micro, x[a:b], y[a:b]) for a, b in cuts], [b - a for a, b in cuts]
        )
        torch.testing.assert_close(loss_micro, loss_full.to(torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(w_micro.detach(), w_full.detach(), rtol=1e-10, atol=1e-12)
    assert not torch.equal(w_full.detach(), torch.zeros(5, dtype=torch.float64))
    assert count_full == ForwardCount(forward_passes=2, forward_calls=2)
    assert count_micro == ForwardCount(forward_passes=2, forward_calls=6)


def test_first_order_count_and_bad_counts() -> None:
    w, x, y = _problem()
    opt = torch.optim.SGD([w], lr=0.1)

    def backward() -> torch.Tensor:
        opt.zero_grad()
        loss = _mse(w, x, y)()
        loss.backward()
        return loss.detach()

    _, count = fo_step(opt, backward)
    assert count == ForwardCount(forward_passes=FO_FORWARD_EQUIVALENTS, forward_calls=1, backward_calls=1)
    with pytest.raises(ValueError, match="2 closures and 1 counts"):
        step_closure([_mse(w, x, y)] * 2, [12])
