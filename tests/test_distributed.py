"""Data-parallel zero-order training over torch.distributed (2 gloo processes on the CPU)."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from ranks import run_ranks

from llm.distributed import (
    CommunicationLog,
    RankFailure,
    accumulating_closure,
    close_process_group,
    data_parallel_closure,
    parameters_digest,
    replicas_identical,
    shard_bounds,
)
from zotheory.estimators import NonFiniteLossError
from zotheory.optim import ZOSGD

pytestmark = pytest.mark.distributed

N_EXAMPLES, DIM, STEPS = 24, 6, 30


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(N_EXAMPLES, DIM, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(DIM, 1, generator=gen, dtype=torch.float64) + 0.1 * torch.randn(
        N_EXAMPLES, 1, generator=gen, dtype=torch.float64
    )
    return x, y


def _model() -> torch.nn.Linear:
    model = torch.nn.Linear(DIM, 1, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.linspace(-1.0, 1.0, DIM, dtype=torch.float64).reshape(1, DIM))
        model.bias.fill_(0.5)
    return model


def _mse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    return lambda: torch.mean((model(x) - y) ** 2)


def _init(rank: int, world: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=20))


def _train_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    _init(rank, world, port)
    x, y = _data()
    start, stop = shard_bounds(N_EXAMPLES, rank, world)
    model = _model()
    opt = ZOSGD(model.parameters(), lr=0.02, eps=1e-3, seed=3)
    log = CommunicationLog()
    closure = data_parallel_closure(_mse(model, x[start:stop], y[start:stop]), stop - start, log=log)
    identical = True
    for _ in range(STEPS):
        opt.step(closure)
        identical &= replicas_identical(list(model.parameters()))
    torch.save(
        {
            "params": [p.detach().clone() for p in model.parameters()],
            "identical": identical,
            "bytes": log.bytes,
            "calls": log.calls,
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    close_process_group()


def _failure_worker(rank: int, world: int, port: int, out_dir: str, mode: str) -> None:
    _init(rank, world, port)
    x, y = _data()
    start, stop = shard_bounds(N_EXAMPLES, rank, world)
    model = _model()
    opt = ZOSGD(model.parameters(), lr=0.02, eps=1e-3, seed=3, exact_restore=True)
    local = _mse(model, x[start:stop], y[start:stop])
    calls = {"n": 0}

    def faulty() -> torch.Tensor:
        calls["n"] += 1
        if rank == 1 and calls["n"] == 2 * 3 + 2:  # second evaluation of step 4
            if mode == "die":
                os._exit(0)
            return torch.tensor(float("nan"), dtype=torch.float64)
        return local()

    closure = data_parallel_closure(faulty, stop - start)
    for _ in range(3):
        opt.step(closure)
    before = [p.detach().clone() for p in model.parameters()]
    outcome = "no error"
    try:
        opt.step(closure)
    except NonFiniteLossError:
        outcome = "nonfinite"
    except RankFailure:
        outcome = "rank failure"
    restored = all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=False))
    torch.save({"outcome": outcome, "restored": restored}, os.path.join(out_dir, f"rank{rank}.pt"))
    if mode == "nan":
        close_process_group()


def test_shard_bounds_partition_the_batch() -> None:
    for n in (0, 1, 7, 24):
        for world in (1, 2, 3, 5):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(bounds[k][1] == bounds[k + 1][0] for k in range(world - 1))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="rank 2"):
        shard_bounds(10, 2, 2)


def test_accumulating_closure_equals_full_batch_closure() -> None:
    x, y = _data()
    model = _model()
    full = _mse(model, x, y)()
    micro = [_mse(model, x[a:b], y[a:b]) for a, b in ((0, 5), (5, 16), (16, 24))]
    acc = accumulating_closure(micro, [5, 11, 8])()
    assert torch.allclose(acc, full.detach(), rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="one count per"):
        accumulating_closure(micro, [5, 11])


def test_data_parallel_equals_single_process_and_replicas_agree(tmp_path) -> None:
    run_ranks(_train_worker, (str(tmp_path),), world=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["identical"] and r1["identical"]
    assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"], strict=False))

    x, y = _data()
    model = _model()
    opt = ZOSGD(model.parameters(), lr=0.02, eps=1e-3, seed=3)
    closure = _mse(model, x, y)
    for _ in range(STEPS):
        opt.step(closure)
    # The shard-weighted mean differs from the full-batch mean only by float64 summation
    # order (~1e-16 relative per loss); divided by 2*eps = 2e-3 in the difference quotient
    # and accumulated over 30 steps this stays far below 1e-9.
    for a, b in zip(r0["params"], model.parameters(), strict=False):
        assert torch.allclose(a, b.detach(), rtol=0, atol=1e-9)
    assert not torch.equal(r0["params"][0], _model().weight.detach())  # it trained
    # scalar-only communication: two float64 numbers per closure evaluation
    assert r0["calls"] == 2 * STEPS
    assert r0["bytes"] == 16 * 2 * STEPS


@pytest.mark.parametrize("mode, expected", [("nan", "nonfinite"), ("die", "rank failure")])
def test_failures_leave_every_surviving_rank_restored(tmp_path, mode: str, expected: str) -> None:
    run_ranks(_failure_worker, (str(tmp_path), mode), world=2, expect_success=False)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    assert r0["outcome"] == expected
    assert r0["restored"]
    if mode == "nan":
        r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
        assert r1["outcome"] == "nonfinite" and r1["restored"]


def test_parameters_digest_detects_a_one_ulp_change() -> None:
    a = [torch.ones(3, dtype=torch.float32), torch.zeros(2, 2)]
    b = [t.clone() for t in a]
    assert parameters_digest(a) == parameters_digest(b)
    b[0][1] = torch.nextafter(b[0][1], torch.tensor(2.0))
    assert parameters_digest(a) != parameters_digest(b)
