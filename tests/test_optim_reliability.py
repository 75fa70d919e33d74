"""Guards of the optimizer base class (issue 15): a non-finite update, duplicate or integer
parameters, a closure returning a value that is not a real scalar, another method's state_dict."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from zotheory.optim import ZOSGD, ZOAdam, make_optimizer
from zotheory.optim.base import NonFiniteUpdateError, ZOOptimizer, all_finite
from zotheory.optim.registry import OPTIMIZERS

NAMES = sorted(OPTIMIZERS)


def make(name: str, params: Any, **kw: Any) -> ZOOptimizer:
    return make_optimizer(name, params, **{**OPTIMIZERS[name].test_config, **kw})


def two_blocks(dtype: torch.dtype = torch.float64) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    return [nn.Parameter(torch.randn(6, 5, generator=g, dtype=torch.float64).to(dtype), requires_grad=False),
            nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64).to(dtype), requires_grad=False)]  # fmt: skip


def quad(params: list[torch.Tensor]):
    return lambda: sum((p.double() ** 2).sum() for p in params)


def snap(opt: ZOOptimizer) -> tuple[list[torch.Tensor], list[Any]]:
    params = [p.detach().clone() for p in opt.zo_params()]
    state = []
    for key, st in opt.state.items():
        if isinstance(st, dict) and key != "zo":  # the step and skip counters are checked separately
            for k in sorted(st, key=str):
                v = st[k]
                state.append((str(k), v.clone() if isinstance(v, torch.Tensor) else repr(v)))
    return params, state


def same(a: tuple, b: tuple) -> bool:
    (pa, sa), (pb, sb) = a, b
    if not all(torch.equal(x, y) for x, y in zip(pa, pb, strict=False)) or len(sa) != len(sb):
        return False
    for (ka, va), (kb, vb) in zip(sa, sb, strict=False):
        if ka != kb or type(va) is not type(vb):
            return False
        if isinstance(va, torch.Tensor) and not torch.equal(va, vb):
            return False
        if not isinstance(va, torch.Tensor) and va != vb:
            return False
    return True


# --------------------------------------------------------------------------------------
# 5. the update itself is checked
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_fp16_overflow_of_the_update_is_caught_and_the_step_undone(mode: str) -> None:
    p = nn.Parameter(torch.ones(8, dtype=torch.float16), requires_grad=False)
    opt = ZOSGD([p], lr=100.0, eps=1e-2, exact_restore=True, on_nonfinite=mode)
    closure = lambda: (p.float() * 1000).sum()  # noqa: E731 - gradient 1000: the update is ~1e5 > fp16 max
    before = p.detach().clone()
    if mode == "raise":
        with pytest.raises(NonFiniteUpdateError, match=r"step 0 .*param_0.*non-finite"):
            opt.step(closure)
    else:
        assert math.isnan(float(opt.step(closure)))
        assert opt.state["zo"]["skipped"] == 1
    assert torch.equal(p, before) and bool(torch.isfinite(p).all())


def _poison_update(monkeypatch: pytest.MonkeyPatch, opt: ZOOptimizer) -> None:
    """Make the method's own update end with an inf in the last tensor (after its state moved)."""
    real = type(opt)._update

    def poisoned(self, est):
        real(self, est)
        self.zo_params()[-1].view(-1)[0] = float("inf")

    monkeypatch.setattr(type(opt), "_update", poisoned)


@pytest.mark.parametrize("name", NAMES)
def test_every_method_undoes_a_nonfinite_update_bit_exactly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    params = two_blocks()
    opt = make(name, params, exact_restore=True, on_nonfinite="skip")
    closure = quad(params)
    opt.step(closure)  # some state to restore
    before = snap(opt)
    step_before = opt.state["zo"]["step"]
    _poison_update(monkeypatch, opt)
    opt.step(closure)
    assert same(snap(opt), before), f"{name}: a non-finite update left parameters or state changed"
    assert opt.state["zo"]["skipped"] == 1 and opt.state["zo"]["step"] == step_before + 1
    monkeypatch.undo()
    opt.step(closure)  # and the run goes on
    assert all(bool(torch.isfinite(p).all()) for p in params)


def test_without_exact_restore_a_nonfinite_update_raises_even_in_skip_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    params = two_blocks()
    opt = make("zo-sgd", params, on_nonfinite="skip")
    _poison_update(monkeypatch, opt)
    with pytest.raises(NonFiniteUpdateError, match="exact_restore=True"):
        opt.step(quad(params))


# --------------------------------------------------------------------------------------
# 8. duplicate parameters, 10. integer parameters and bad closure values
# --------------------------------------------------------------------------------------


def test_duplicate_parameters_are_refused() -> None:
    p = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"param_1.*more than once.*param_0"):
        ZOSGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match=r"'w2'.*more than once.*'w'"):
        ZOSGD([("w", p), ("w2", p)], lr=0.1)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_non_real_floating_parameters_are_refused(dtype: torch.dtype) -> None:
    with pytest.raises(ValueError, match=rf"param_0.*{str(dtype).removeprefix('torch.')}.*floating"):
        ZOSGD([torch.zeros(3, dtype=dtype)], lr=0.1)


@pytest.mark.parametrize(
    "value,match",
    [
        (None, r"returned None"),
        ("0.5", r"returned a str"),
        (True, r"returned a bool"),
        (torch.tensor(True), r"torch\.bool"),
        (torch.tensor(1.0 + 2.0j), r"complex"),
        (torch.ones(3), r"shape \(3,\)"),
        ([1.0], r"returned a list"),
    ],
)
def test_a_closure_value_that_is_not_a_real_scalar_is_named(value: Any, match: str) -> None:
    p = nn.Parameter(torch.zeros(3, dtype=torch.float64), requires_grad=False)
    opt = ZOSGD([p], lr=0.1, exact_restore=True)
    with pytest.raises(TypeError, match=r"closure .*" + match):
        opt.step(lambda: value)
    assert torch.equal(p, torch.zeros(3, dtype=torch.float64)) and opt.state["zo"]["step"] == 0


def test_real_scalar_closure_values_of_every_kind_are_accepted() -> None:
    p = nn.Parameter(torch.zeros(3, dtype=torch.float64), requires_grad=False)
    opt = ZOSGD([p], lr=0.1)
    for value in (1, 1.5, torch.tensor(2), torch.tensor([3.0]), torch.tensor(4.0, dtype=torch.float16)):
        assert math.isfinite(float(opt.step(lambda value=value: value)))


# --------------------------------------------------------------------------------------
# 9. another method's state_dict
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("src,dst", [("zo-sgd-mmt", "zo-adam"), ("adanaged", "zo-dog"), ("zo-adam", "zo-sgd")])
def test_another_methods_state_dict_is_refused_at_load_time(src: str, dst: str) -> None:
    a = make(src, two_blocks())
    a.step(quad(a.zo_params()))
    b = make(dst, two_blocks())
    with pytest.raises(ValueError, match=rf"{type(a).__name__}.*{type(b).__name__}"):
        b.load_state_dict(a.state_dict())


def test_a_state_dict_for_other_shapes_is_refused_at_load_time() -> None:
    a = ZOAdam([torch.zeros(6, 5, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)], lr=0.1)
    a.step(quad(a.zo_params()))
    b = ZOAdam([torch.zeros(5, 6, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)], lr=0.1)
    with pytest.raises(ValueError, match=r"param_0.*\(6, 5\).*\(5, 6\)"):
        b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_all_finite_agrees_with_isfinite_including_overflowing_sums(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    big = torch.finfo(dtype).max
    for trial in range(40):
        ts = [torch.randn(int(n), generator=g).to(dtype) for n in torch.randint(1, 50, (3,), generator=g)]
        kind = trial % 4
        if kind == 1:  # one non-finite entry somewhere
            t = ts[trial % 3]
            t[int(torch.randint(0, t.numel(), (1,), generator=g))] = [float("nan"), float("inf"), -float("inf")][
                trial % 3
            ]
        elif kind == 2:  # finite entries whose sum overflows: the inconclusive case, decided exactly
            ts[0] = torch.full((8,), big, dtype=dtype)
        elif kind == 3:  # +inf and -inf: the sum is NaN
            ts[1][0], ts[1][-1] = float("inf"), -float("inf")
        expect = all(bool(torch.isfinite(t).all()) for t in ts)
        assert all_finite(ts) == expect, (trial, kind, dtype)
    assert all_finite([]) is True
