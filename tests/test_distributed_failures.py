"""Failures under data parallelism (3 gloo ranks on the CPU): skip mode, the arithmetic restore,
an exception on one rank inside the ``--distributed`` training loop, and a rank that hangs.

The invariant under test: whatever one rank does, every rank takes the same decision at the same
step (the loss is all-reduced before any rank looks at it), so the replicas stay bit-identical;
a rank that raises or stops answering makes every surviving rank stop with an error that names
the step and the rank, with its parameters restored.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from ranks import free_port, run_ranks

from llm.distributed import (
    close_process_group,
    data_parallel_closure,
    parameters_digest,
    replicas_identical,
    shard_bounds,
)
from zotheory.estimators import NonFiniteLossError
from zotheory.optim import ZOSGD

pytestmark = pytest.mark.distributed

WORLD = 3
N_EXAMPLES, DIM = 12, 5
BAD_STEP = 3  # the 1-based step at which the last rank misbehaves
UNIT_ROUNDOFF_F64 = 2.0**-53


# --------------------------------------------------------------------------------------
# The optimizer under data parallelism: skip mode and the arithmetic restore
# --------------------------------------------------------------------------------------


def _restore_bound(opt: ZOSGD, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Rounding bound of the arithmetic restore ``(x + r z) - r z`` in float64, per entry
    (the derivation is in ``tests/test_optimizers.py::_drift_bound``)."""
    r = opt.radius()
    zs = opt.directions.materialize([p.detach() for p in params], opt.step_seed(), 0)
    return [
        1.01 * UNIT_ROUNDOFF_F64 * (3 * p.detach().abs() + 6 * r * z.abs()) for p, z in zip(params, zs, strict=False)
    ]


SCENARIOS = {"skip-exact": ("skip", True), "skip-arith": ("skip", False), "raise-arith": ("raise", False)}


def _optimizer_scenario(rank: int, world: int, on_nonfinite: str, exact_restore: bool) -> dict:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(N_EXAMPLES, DIM, generator=gen, dtype=torch.float64)
    y = x.sum(dim=1, keepdim=True)
    start, stop = shard_bounds(N_EXAMPLES, rank, world)
    model = torch.nn.Linear(DIM, 1, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.linspace(-1.3, 0.7, DIM, dtype=torch.float64).reshape(1, DIM))
        model.bias.fill_(0.25)
    params = list(model.parameters())
    opt = ZOSGD(params, lr=0.05, eps=1e-2, seed=5, on_nonfinite=on_nonfinite, exact_restore=exact_restore)
    calls = {"n": 0}

    def local() -> torch.Tensor:
        calls["n"] += 1
        if rank == world - 1 and calls["n"] == 2 * (BAD_STEP - 1) + 1:  # first evaluation (x + r z) of BAD_STEP
            return torch.tensor(float("nan"), dtype=torch.float64)
        return torch.mean((model(x[start:stop]) - y[start:stop]) ** 2)

    closure = data_parallel_closure(local, stop - start)
    record: dict = {"identical": [], "outcome": None}
    for step in range(1, 6):
        before = [p.detach().clone() for p in params]
        bound = _restore_bound(opt, params)
        try:
            loss = opt.step(closure)
            outcome = "skipped" if step == BAD_STEP and bool(torch.isnan(loss)) else "ok"
        except NonFiniteLossError:
            outcome = "raised"
        record["identical"].append(replicas_identical(params))
        if step == BAD_STEP:
            err = [(p.detach() - b).abs() for p, b in zip(params, before, strict=False)]
            record.update(
                outcome=outcome,
                bit_identical_to_before=all(torch.equal(p.detach(), b) for p, b in zip(params, before, strict=False)),
                within_bound=all(bool((e <= bd).all()) for e, bd in zip(err, bound, strict=False)),
                max_err=max(float(e.max()) for e in err),
            )
            if outcome == "raised":
                break
    record.update(
        zo_step=int(opt.state["zo"]["step"]),
        skipped=int(opt.state["zo"]["skipped"]),
        digest=parameters_digest(params).hex(),
    )
    return record


def _optimizer_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=30))
    for name, (on_nonfinite, exact_restore) in SCENARIOS.items():
        record = _optimizer_scenario(rank, world, on_nonfinite, exact_restore)
        Path(out_dir, f"{name}-rank{rank}.json").write_text(json.dumps(record))
    close_process_group()


@pytest.fixture(scope="module")
def optimizer_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three scenarios of :data:`SCENARIOS`, one after the other in one set of 3 processes."""
    out = tmp_path_factory.mktemp("optimizer")
    run_ranks(_optimizer_worker, (str(out),), WORLD)
    return out


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_nan_on_one_rank_is_handled_identically_on_every_rank(optimizer_runs: Path, scenario: str) -> None:
    on_nonfinite, exact_restore = SCENARIOS[scenario]
    recs = [json.loads((optimizer_runs / f"{scenario}-rank{r}.json").read_text()) for r in range(WORLD)]
    expected = "skipped" if on_nonfinite == "skip" else "raised"
    for r, rec in enumerate(recs):
        assert rec["outcome"] == expected, f"rank {r}"
        assert all(rec["identical"]), f"rank {r}: replicas differ after step {rec['identical'].index(False) + 1}"
        if exact_restore:
            assert rec["bit_identical_to_before"], f"rank {r}"
        else:
            assert rec["within_bound"], f"rank {r}: restore error {rec['max_err']:.3g} above the rounding bound"
        if on_nonfinite == "skip":
            assert rec["skipped"] == 1 and rec["zo_step"] == 5, f"rank {r}: {rec}"
        else:
            assert rec["skipped"] == 0 and rec["zo_step"] == BAD_STEP - 1, f"rank {r}: {rec}"
    assert len({rec["digest"] for rec in recs}) == 1  # and the final replicas are bit-identical


# --------------------------------------------------------------------------------------
# The --distributed training loop (tiny OPT): skip, an exception on one rank, a hung rank
# --------------------------------------------------------------------------------------


def _data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["text\tlabel"] + [f"{'a great film' if i % 2 else 'a dull film'} {i} \t{i % 2}" for i in range(24)]
    (folder / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def _argv(data: str, out: str, *extra: str) -> list[str]:
    return [
        "--model", "preset:tiny", "--data-dir", data, "--method", "zo-sgd", "--lr", "1e-3", "--opt", "eps=1e-2",
        "--num-train", "16", "--num-dev", "4", "--num-eval", "4", "--max-length", "16", "--steps", "4",
        "--batch-size", "6", "--eval-every", "2", "--threads", "1", "--no-progress", "--out", out, "--distributed",
        *extra,
    ]  # fmt: skip


def _inject(real_make_closure, rank: int, bad_rank: int, what: str) -> None:  # type: ignore[no-untyped-def]
    """Make ``bad_rank``'s closure misbehave at step BAD_STEP of the next run: ``nan`` (a non-finite
    loss), ``raise`` (an exception in the forward pass) or ``hang`` (it stops answering); the other
    ranks get ``real_make_closure`` back. Patched where the loop looks it up: ``llm.train.make_closure``."""
    import llm.train

    llm.train.make_closure = real_make_closure
    if rank != bad_rank:
        return
    steps = {"n": 0}

    def make_closure(objective, batch, device=None):  # type: ignore[no-untyped-def]
        steps["n"] += 1
        inner = real_make_closure(objective, batch, device)
        if steps["n"] != BAD_STEP:
            return inner

        def bad() -> torch.Tensor:
            if what == "nan":
                return torch.tensor(float("nan"))
            if what == "raise":
                raise RuntimeError("injected failure in the forward pass")
            time.sleep(600)
            return inner()

        return bad

    llm.train.make_closure = make_closure


#: The loop's scenarios, run one after the other by the same 3 processes: (misbehaving rank, what, extra flags).
LOOP_SCENARIOS = {
    "nan": (WORLD - 1, "nan", ("--opt", "on_nonfinite=skip")),
    "raise": (1, "raise", ()),
    "hang": (WORLD - 1, "hang", ("--dist-timeout", "3")),  # last: the hung rank never comes back
}


def _loop_worker(rank: int, world: int, port: int, root: str, more_ports: list[int]) -> None:
    import llm.objective
    from llm.finetune import main

    real_make_closure = llm.objective.make_closure
    data = str(_data(Path(root, f"data{rank}")))
    for (name, (bad_rank, what, extra)), scenario_port in zip(
        LOOP_SCENARIOS.items(), [port, *more_ports], strict=False
    ):
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(scenario_port),
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
        )
        _inject(real_make_closure, rank, bad_rank, what)
        err, out = io.StringIO(), io.StringIO()
        record: dict = {}
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                record["exit"] = main(_argv(data, str(Path(root, name)), *extra))
            except Exception as e:  # noqa: BLE001 - the record says what it was
                record.update(exit=None, exception=type(e).__name__, message=str(e))
        record["stderr"] = err.getvalue()
        if record["exit"] == 0:
            record["summary"] = json.loads(out.getvalue())
        Path(root, f"{name}-rank{rank}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def loop_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs of :data:`LOOP_SCENARIOS` (``--out`` is ``<root>/<scenario>``), in one set of 3 processes."""
    root = tmp_path_factory.mktemp("loop")
    run_ranks(_loop_worker, (str(root), [free_port() for _ in range(len(LOOP_SCENARIOS) - 1)]), WORLD, hung=WORLD - 1)
    return root


def _records(root: Path, scenario: str, ranks) -> dict[int, dict]:  # type: ignore[no-untyped-def]
    return {r: json.loads((root / f"{scenario}-rank{r}.json").read_text()) for r in ranks}


def test_loop_skips_a_nan_on_one_of_three_ranks_on_every_rank(loop_runs: Path) -> None:
    out = loop_runs / "nan"
    for r, rec in _records(loop_runs, "nan", range(WORLD)).items():
        assert rec["exit"] == 0, f"rank {r}: {rec}"
        assert rec["summary"]["data_parallel"]["world_size"] == WORLD
        assert rec["summary"]["data_parallel"]["replicas_identical"], f"rank {r}"
    results = json.loads((out / "results.json").read_text())
    assert results["skipped_steps"] == 1 and results["steps"] == 4
    train_rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert [row["skipped"] for row in train_rows] == [s == BAD_STEP for s in range(1, 5)]


def test_loop_exception_on_one_rank_stops_every_rank_with_a_clear_error(loop_runs: Path) -> None:
    out = loop_runs / "raise"
    recs = _records(loop_runs, "raise", range(WORLD))
    assert recs[1]["exception"] == "RuntimeError" and "injected failure" in recs[1]["message"]
    for r in (0, 2):
        assert recs[r]["exit"] == 4, f"rank {r}: {recs[r]}"  # llm.finetune.EXIT_RANK_FAILURE
        line = recs[r]["stderr"].strip()
        assert "\n" not in line and "Traceback" not in line, line
        assert f"step {BAD_STEP} of zo-sgd" in line and f"rank {r} of {WORLD}" in line, line
    # rank 0 wrote the run folder: the last good checkpoint is there and named, nothing half-written
    assert "last.pt" in recs[0]["stderr"] and (out / "last.pt").is_file()
    assert not list(out.glob("*.tmp*")) and not (out / "results.json").exists()


def test_a_hung_rank_times_out_with_a_clear_error_on_every_surviving_rank(loop_runs: Path) -> None:
    assert not (loop_runs / f"hang-rank{WORLD - 1}.json").exists()  # the hung rank never got past its step
    for r, rec in _records(loop_runs, "hang", range(WORLD - 1)).items():
        assert rec["exit"] == 4, f"rank {r}: {rec}"
        line = rec["stderr"].strip()
        assert "\n" not in line and "Traceback" not in line, line
        assert (
            f"step {BAD_STEP} of zo-sgd" in line and f"rank {r} of {WORLD}" in line and "--dist-timeout 3 s" in line
        ), line


def test_dist_timeout_must_be_positive() -> None:
    from llm.config import FinetuneConfig
    from llm.distributed import init_process_group_from_env

    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=f"dist_timeout must be a positive finite number of seconds, got {bad!r}"):
            FinetuneConfig(dist_timeout=bad)
        with pytest.raises(ValueError, match=f"got {bad!r}"):
            init_process_group_from_env(timeout=bad)
    assert FinetuneConfig().dist_timeout >= 600  # generous by default: a slow step is not a hang
