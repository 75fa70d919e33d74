"""The OPT-1.3B validation script at tiny size on the CPU, through its GPU code path.

``llm.opt_validation`` measures with a device meter (``CudaMeter`` on a GPU). Here a meter with the
CUDA meter's semantics (``memory_kind`` "cuda_max_memory_allocated", a peak that only
``reset_peak`` clears, synchronisation around every timed call) stands in for it on the CPU, so every
line of the GPU path except the ``torch.cuda`` calls themselves runs: fp16 model, real SST-2-format
data, LoRA and full fine-tuning, measurement, training with the project's loop, merged results and
the tables in the JAGUAR paper's format.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from llm import opt_validation as ov  # noqa: E402

WORDS_POS = ["a charming film", "great fun and moving", "the best movie", "warm and funny", "a beautiful story"]
WORDS_NEG = ["dull and long", "the worst plot", "flat acting and boring", "nothing works", "a bad film"]


def _write_sst2(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["text\tlabel"]
    for i in range(24):
        pos = i % 2 == 0
        words = (WORDS_POS if pos else WORDS_NEG)[i % 5]
        rows.append(f"{words} number {i} \t{int(pos)}")
    (folder / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("\n".join(rows[:9]) + "\n", encoding="utf-8")
    return folder


class FakeCudaMeter(ov.CpuMeter):
    """CUDA semantics on the CPU: the peak is a counter that grows with every reading and is only
    cleared by ``reset_peak``; every call is logged so the protocol can be checked."""

    kind = "cuda"
    memory_kind = ov.CudaMeter.memory_kind

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        self.calls: list[str] = []
        self._peak = 0

    def synchronize(self) -> None:
        self.calls.append("sync")

    def reset_peak(self) -> None:
        self.calls.append("reset")
        self._peak = 1_000_000_000

    def allocated(self) -> int | None:
        return 500_000_000

    def peak(self) -> int | None:
        self.calls.append("peak")
        self._peak += 250_000_000
        return self._peak

    def describe(self) -> dict[str, Any]:
        return {"device": "Fake GPU"}


COMMON = [
    "--model",
    "preset:tiny",
    "--methods",
    "zo-sgd,fo-sgd",
    "--modes",
    "ft,lora",
    "--dtype",
    "fp16",
    "--device",
    "cpu",
    "--num-train",
    "8",
    "--num-dev",
    "4",
    "--num-eval",
    "4",
    "--batch-size",
    "2",
    "--max-length",
    "16",
]


@pytest.fixture(scope="module")
def validation_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """measure-only, then training into the same folder (steps capped by the measured step time)."""
    root = tmp_path_factory.mktemp("optval")
    data = _write_sst2(root / "sst2")
    out = root / "out"
    meters: list[FakeCudaMeter] = []

    def fake_make_meter(device: str | torch.device) -> ov.DeviceMeter:
        m = FakeCudaMeter(torch.device(device))
        meters.append(m)
        return m

    mp = pytest.MonkeyPatch()
    mp.setattr(ov, "make_meter", fake_make_meter)
    try:
        rc1 = ov.main(
            [
                *COMMON,
                "--data-dir",
                str(data),
                "--measure-only",
                "--measure-steps",
                "1",
                "--measure-forwards",
                "1",
                "--out",
                str(out),
            ]
        )
        rc2 = ov.main(
            [
                *COMMON,
                "--data-dir",
                str(data),
                "--no-measure",
                "--steps",
                "3",
                "--eval-every",
                "1",
                "--time-cap",
                "1e-9",
                "--out",
                str(out),
            ]
        )
    finally:
        mp.undo()
    return {
        "rc": (rc1, rc2),
        "results": json.loads((out / "results.json").read_text()),
        "tables": (out / "tables.md").read_text(),
        "meters": meters,
        "out": out,
    }


def test_runs_succeed_and_merge(validation_run: dict[str, Any]) -> None:
    assert validation_run["rc"] == (0, 0)
    res = validation_run["results"]
    keys = sorted((r["kind"], r["key"], r["mode"]) for r in res["records"])
    expected = sorted(
        (k, m, mode) for k in ("measure", "train") for m in ("zo-sgd", "fo-sgd") for mode in ("ft", "lora")
    )
    assert keys == expected
    errors = [r for r in res["records"] if r.get("error")]
    assert errors == []
    assert len(res["meta"]["commands"]) == 2 and "--measure-only" in res["meta"]["commands"][0]
    assert res["meta"]["memory_kind"] == "cuda_max_memory_allocated"
    assert res["meta"]["environment"]["device"] == "Fake GPU"


def test_measurements_follow_the_meter_protocol(validation_run: dict[str, Any]) -> None:
    res = validation_run["results"]
    meas = {(r["key"], r["mode"]): r for r in res["records"] if r["kind"] == "measure"}
    for (key, _mode), r in meas.items():
        # each phase: reset, then calls, then one peak reading -> 1e9 + 250e6 (one reading after reset)
        assert r["inference_peak_bytes"] == 1_250_000_000
        assert r["step_peak_bytes"] == 1_250_000_000
        assert r["first_step_peak_bytes"] == r["steady_step_peak_bytes"] == 1_250_000_000
        assert r["memory_kind"] == "cuda_max_memory_allocated"
        assert r["resident_before_bytes"] == 500_000_000
        assert len(r["forward_s_all"]) == 1 and len(r["step_s_all"]) == 1
        assert r["step_over_forward"] == pytest.approx(r["step_s"] / r["forward_s"])
        assert r["forward_passes_per_step"] == (2 if key == "zo-sgd" else 3)
        assert r["batch_shape"][0] >= 2 and r["batch_tokenizer"] == "sst2-bpe"
        assert len(r["losses"]) == 1 + len(r["step_s_all"]) and all(loss == loss for loss in r["losses"])  # no NaN
    assert meas[("zo-sgd", "lora")]["num_trainable_parameters"] < meas[("zo-sgd", "ft")]["num_trainable_parameters"]
    assert meas[("zo-sgd", "ft")]["optimizer_state_bytes"] == 0
    # every timed call is bracketed by synchronisations; peaks are read only after a reset
    calls = validation_run["meters"][0].calls
    assert calls.count("reset") == 3 * len(meas)  # inference, first step, steady steps
    for i, c in enumerate(calls):
        if c == "peak":
            assert "reset" in calls[:i]
    assert calls.count("sync") >= 2 * sum(len(r["forward_s_all"]) + len(r["step_s_all"]) + 1 for r in meas.values())


def test_training_records(validation_run: dict[str, Any]) -> None:
    res = validation_run["results"]
    for r in (r for r in res["records"] if r["kind"] == "train"):
        # --time-cap 1e-9 with a measured step time caps training at one step
        assert r["steps"] == 1 and "capped" in r["note"]
        assert 0.0 <= r["eval_accuracy"] <= 1.0
        assert r["forward_passes"] == (2 if r["key"] == "zo-sgd" else 3)
        assert r["loss_curve"] and r["dev_curve"][0]["step"] == 0
        assert not (Path(r["run_dir"]) / "best.pt").exists()
        assert (Path(r["run_dir"]) / "metrics.jsonl").exists()


def _table(md: str, title: str) -> list[list[str]]:
    block = md.split(title, 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in block.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]


def test_tables_have_the_paper_format(validation_run: dict[str, Any]) -> None:
    md = validation_run["tables"]
    acc = _table(md, "Test accuracy (%)")
    assert acc[0] == ["Method", "FT (ours)", "FT (JAGUAR)", "LoRA (ours)", "LoRA (JAGUAR)"]
    body = {r[0]: r[1:] for r in acc[2:]}
    assert list(body) == ["FO-SGD", "ZO-SGD"]  # METHODS order
    assert body["ZO-SGD"][1] == "90.8" and body["ZO-SGD"][3] == "90.1"
    assert body["FO-SGD"][1] == "91.1" and body["FO-SGD"][3] == "93.6"
    assert all(re.fullmatch(r"\d+\.\d \(1 steps\)", body[k][i]) for k in body for i in (0, 2))

    mem = _table(md, "Peak memory")
    assert mem[0] == ["Method", "FT (ours)", "FT (JAGUAR)", "LoRA (ours)", "LoRA (JAGUAR)"]
    body = {r[0]: r[1:] for r in mem[2:]}
    assert body["ZO-SGD"] == ["1.250", "4.171", "1.250", "4.125"]
    assert body["FO-SGD"] == ["1.250", "12.246", "1.250", "5.855"]
    assert "max_memory_allocated" in md.split("Peak memory", 1)[1].split("\n## ", 1)[0]

    thr = _table(md, "Memory and throughput per step")
    assert len(thr) == 2 + 4 and all(len(r) == len(thr[0]) for r in thr)
    assert "random" in md  # preset models are flagged as random weights


def test_render_tables_without_runs_and_with_errors() -> None:
    results = {
        "meta": {"model": "facebook/opt-1.3b", "dtype": "fp16"},
        "records": [
            {
                "kind": "measure",
                "key": "jaguar-muon",
                "label": "JAGUAR Muon",
                "mode": "ft",
                "error": "OutOfMemoryError: x",
            },
            {
                "kind": "train",
                "key": "zo-sgd+gv",
                "label": "ZO-SGD + GV",
                "mode": "lora",
                "steps": 10,
                "eval_accuracy": 0.9,
                "best_dev_accuracy": 0.9,
                "dev_accuracy_step0": 0.5,
                "loss_curve": [],
            },
        ],
    }
    md = ov.render_tables(results)
    acc = {r[0]: r[1:] for r in _table(md, "Test accuracy (%)")[2:]}
    assert acc["ZO-SGD + GV"] == ["—", "—", "90.0 (10 steps)", "—"]  # no paper number for the policies
    assert acc["JAGUAR Muon"] == ["—", "72.5 ± 0.1", "—", "94.0 ± 0.1"]
    mem = {r[0]: r[1:] for r in _table(md, "Peak memory")[2:]}
    assert mem["JAGUAR Muon"] == ["error", "4.179", "—", "4.132"]
    assert "OutOfMemoryError" in md.split("## Errors", 1)[1]
    assert "random" not in md.split("## Test accuracy", 1)[0]


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert ov.main(["--methods", "zo-sgd,nope", "--out", str(tmp_path)]) == 2
    assert ov.main(["--modes", "ft,prefix", "--out", str(tmp_path)]) == 2
    assert ov.main(["--steps", "0", "--out", str(tmp_path)]) == 2
    assert ov.main(["--measure-only", "--no-measure", "--out", str(tmp_path)]) == 2
    if not torch.cuda.is_available():
        assert ov.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "results.json").exists()
    with pytest.raises(ValueError, match="nope"):
        ov.parse_methods("nope")
    assert [e.key for e in ov.parse_methods("default")] == list(ov.DEFAULT_METHODS)
    # --measure-only's default: every registered method has a row
    from zotheory.optim import OPTIMIZERS

    assert set(OPTIMIZERS) <= {e.method for e in ov.parse_methods("all")}


def test_merge_record_replaces_same_kind_key_mode() -> None:
    res: dict[str, Any] = {"meta": {}, "records": []}
    ov.merge_record(res, {"kind": "measure", "key": "zo-sgd", "mode": "ft", "v": 1})
    ov.merge_record(res, {"kind": "train", "key": "zo-sgd", "mode": "ft", "v": 2})
    ov.merge_record(res, {"kind": "measure", "key": "zo-sgd", "mode": "ft", "v": 3})
    assert [r["v"] for r in res["records"]] == [3, 2]
