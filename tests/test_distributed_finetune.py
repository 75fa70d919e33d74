"""The ``--distributed`` hook of the fine-tuning loop: data-parallel ZO on a tiny OPT, 2 gloo ranks.

Each rank keeps its contiguous shard of every batch and the closure all-reduces the
example-weighted loss (``llm.distributed.data_parallel_closure``), so the run must follow the
single-process run on the whole batch, keep bit-identical replicas and send two float64
scalars per closure evaluation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from ranks import run_ranks  # noqa: E402

from llm.config import FinetuneConfig  # noqa: E402
from llm.distributed import CommunicationLog  # noqa: E402
from llm.train import DataParallel, build_run, read_metrics, train  # noqa: E402

pytestmark = pytest.mark.distributed
STEPS = 4


def _data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["text\tlabel"] + [f"{'a great film' if i % 2 else 'a dull film'} {i} \t{i % 2}" for i in range(24)]
    (folder / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def _cfg(data: Path, out: Path | None, method: str = "zo-sgd") -> FinetuneConfig:
    return FinetuneConfig(
        model="preset:tiny",
        data_dir=str(data),
        method=method,
        opt={"lr": 1e-3, "eps": 1e-2} if method != "fo-sgd" else {"lr": 1e-3},
        num_train=16,
        num_dev=4,
        num_eval=4,
        max_length=24,
        steps=STEPS,
        batch_size=6,
        eval_every=2,
        threads=1,
        progress=False,
        out=None if out is None else str(out),
    )


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    res = train(_cfg(Path(data), Path(out)), distributed=True)
    Path(out, f"rank{rank}.json").write_text(json.dumps(res["data_parallel"]))


def test_distributed_run_follows_the_single_process_run(tmp_path: Path) -> None:
    data = _data(tmp_path / "data")
    run_ranks(_worker, (str(data), str(tmp_path / "dp")), world=2)
    single = train(_cfg(data, tmp_path / "sp"))

    dp = [json.loads((tmp_path / "dp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for d in dp:
        assert d["world_size"] == 2 and d["replicas_identical"]
        # two float64 numbers per closure evaluation, two evaluations per ZO-SGD step
        assert d["allreduce_calls"] == 2 * STEPS and d["allreduce_bytes"] == 16 * 2 * STEPS
    saved = json.loads((tmp_path / "dp" / "results.json").read_text())
    assert saved["data_parallel"]["allreduce_bytes_per_step"] == 32.0
    assert not (tmp_path / "dp" / "rank1").exists()  # only rank 0 writes the run folder

    a = [r["loss"] for r in read_metrics(tmp_path / "dp" / "metrics.jsonl") if r["type"] == "train"]
    b = [r["loss"] for r in read_metrics(tmp_path / "sp" / "metrics.jsonl") if r["type"] == "train"]
    assert len(a) == len(b) == STEPS
    # the shard-weighted mean equals the batch mean up to float32 summation order
    assert a == pytest.approx(b, rel=0, abs=1e-6)
    assert saved["eval_accuracy"] == single["eval_accuracy"]


def test_distributed_refuses_first_order_and_tiny_batches(tmp_path: Path) -> None:
    data = _data(tmp_path / "data")
    dp = DataParallel(rank=0, world=2, log=CommunicationLog())
    with pytest.raises(ValueError, match="zeroth-order"):
        build_run(_cfg(data, None, method="fo-sgd"), data_parallel=dp)
    with pytest.raises(ValueError, match="batch_size"):
        build_run(_cfg(data, None).replace(batch_size=1), data_parallel=dp)
    with pytest.raises(ValueError, match="resume"):
        train(_cfg(data, None), resume=True, distributed=True)
    assert torch.distributed.is_available()
