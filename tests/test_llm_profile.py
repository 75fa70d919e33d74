"""Tests of llm.profile: the JSON it writes and the ratios it computes (no wall-clock asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm.profile import Case, measure_case, parse_cases, summarize

REPO = Path(__file__).resolve().parents[1]


def _rec(
    method: str,
    peak: int,
    base: int = 100,
    step: float | None = None,
    fwd: float | None = None,
    evals: int | None = None,
    device_type: str = "cpu",
) -> dict:
    r = {
        "case": f"p:ft:{method}",
        "preset": "p",
        "mode": "ft",
        "method": method,
        "peak_bytes": peak,
        "baseline_bytes": base,
        "peak_over_baseline_bytes": peak - base,
        "evals_per_step": evals,
        "optimizer_state_bytes": None,
        "device_type": device_type,
    }
    if fwd is not None:
        r["forward_median_s"] = fwd
    if step is not None:
        r["step_median_s"] = step
    return r


def test_summarize_computes_ratios_against_inference_of_the_same_shape() -> None:
    rows = summarize(
        [
            _rec("inference", 1100, fwd=1.0),
            _rec("zo-sgd", 1140, step=2.4, fwd=1.0, evals=2),
            _rec("fo-adam", 2100, step=3.0, fwd=1.0, evals=1),
            {"case": "p:ft:zo-adam", "preset": "p", "mode": "ft", "method": "zo-adam", "error": "boom"},
        ]
    )
    by = {r["method"]: r for r in rows}
    assert by["inference"]["memory_ratio"] == 1.0
    assert by["zo-sgd"]["memory_ratio"] == pytest.approx(1140 / 1100)
    assert by["zo-sgd"]["memory_ratio_over_baseline"] == pytest.approx(1040 / 1000)
    assert by["zo-sgd"]["time_ratio"] == pytest.approx(2.4 / (2 * 1.0))
    assert by["fo-adam"]["time_ratio"] == pytest.approx(3.0)
    t = by["zo-sgd"]["targets"]
    assert t["memory"] == {
        "measure": "memory_ratio_over_baseline",
        "value": pytest.approx(1.04),
        "max": 1.05,
        "ok": True,
    }
    assert t["time"]["ok"] is False and t["time"]["max"] == 1.10
    assert by["zo-adam"] == {"case": "p:ft:zo-adam", "preset": "p", "mode": "ft", "method": "zo-adam", "error": "boom"}
    # on a GPU the absolute peak (max_memory_allocated) is the measure
    gpu = summarize(
        [_rec("inference", 1000, base=0, device_type="cuda"), _rec("zo-sgd", 1060, base=0, device_type="cuda")]
    )
    assert gpu[1]["targets"]["memory"]["measure"] == "memory_ratio" and gpu[1]["targets"]["memory"]["ok"] is False


def test_parse_cases() -> None:
    assert parse_cases("opt-125m:ft:zo-sgd,opt-1.3b:lora:inference:memory") == [
        Case("opt-125m", "ft", "zo-sgd", True),
        Case("opt-1.3b", "lora", "inference", False),
    ]
    with pytest.raises(ValueError, match="expected preset:ft\\|lora"):
        parse_cases("opt-125m:full:zo-sgd")
    with pytest.raises(ValueError, match="'time' or 'memory'"):
        parse_cases("tiny:ft:zo-sgd:speed")


def test_measure_case_in_process_reports_memory_and_interleaved_times() -> None:
    r = measure_case(Case("tiny", "ft", "zo-sgd"), batch_size=2, seq_len=8, repeats=2)
    assert r["evals_per_step"] == 2 and r["kind"] == "zo"
    assert len(r["forward_s"]) == len(r["step_s"]) == 2
    assert r["peak_bytes"] > 0 and r["num_trainable"] == r["num_parameters"] == 33600
    assert r["optimizer_state_bytes"] == 0  # ZO-SGD keeps no state
    lora = measure_case(Case("tiny", "lora", "zo-adam", time=False), batch_size=2, seq_len=8)
    assert "step_s" not in lora and lora["num_trainable"] < lora["num_parameters"]
    assert lora["optimizer_state_bytes"] == 2 * 4 * lora["num_trainable"]  # two fp32 moments


def test_profile_command_writes_json_with_ratios(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    p = subprocess.run(
        [sys.executable, "-m", "llm.profile", "--cases", "tiny:ft:inference,tiny:ft:zo-sgd", "--repeats", "1",
         "--batch-size", "2", "--seq-len", "8", "--threads", "1", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    assert {"settings", "machine", "rows", "records", "targets", "notes", "total_wall_s"} <= rep.keys()
    assert rep["settings"]["dtype"] == "fp32" and rep["settings"]["device"] == "cpu"
    recs = {r["method"]: r for r in rep["records"]}
    rows = {r["method"]: r for r in rep["rows"]}
    assert set(recs) == {"inference", "zo-sgd"} and "error" not in recs["zo-sgd"]
    z, i = recs["zo-sgd"], recs["inference"]
    assert rows["zo-sgd"]["memory_ratio"] == pytest.approx(z["peak_bytes"] / i["peak_bytes"])
    assert rows["zo-sgd"]["memory_ratio_over_baseline"] == pytest.approx(
        (z["peak_bytes"] - z["baseline_bytes"]) / (i["peak_bytes"] - i["baseline_bytes"])
    )
    assert rows["zo-sgd"]["time_ratio"] == pytest.approx(z["step_median_s"] / (2 * z["forward_median_s"]))
    assert set(rows["zo-sgd"]["targets"]) == {"memory", "time"}
    assert "target tiny:ft:zo-sgd memory" in p.stdout and "| case |" in p.stdout


def test_every_registered_method_has_a_default_profile_row() -> None:
    from llm.profile import DEFAULT_CPU_CASES, DEFAULT_GPU_CASES
    from zotheory.optim import OPTIMIZERS

    for cases in (DEFAULT_CPU_CASES, DEFAULT_GPU_CASES):
        assert set(OPTIMIZERS) <= {c.method_name for c in cases if c.time}


def test_case_method_options_and_the_step_breakdown() -> None:
    """``method@key=value`` reaches the optimizer; the instrumented step splits into forward, sweeps, lmo and
    other that add up to the step, with the draws inside the sweeps (Rademacher ZO-SGD: 3 sweeps, 2 forwards)."""
    case = parse_cases("tiny:ft:zo-sgd@directions=rademacher;q=1")[0]
    assert case.method_name == "zo-sgd" and case.method_options == {"directions": "rademacher", "q": 1}
    r = measure_case(case, batch_size=2, seq_len=8, repeats=1, breakdown_steps=2)
    assert r["options"]["directions"] == "rademacher"
    bd = r["breakdown_s"]
    assert set(bd) == {"forward", "sweeps", "draws", "lmo", "other", "step"}
    assert bd["forward"] > 0 and bd["sweeps"] > 0 and 0 < bd["draws"] <= bd["sweeps"]
    assert bd["lmo"] == 0  # ZO-SGD has no LMO
    assert bd["forward"] + bd["sweeps"] <= bd["step"]  # the categories do not overlap
    muon = measure_case(Case("tiny", "ft", "jaguar-muon"), batch_size=2, seq_len=8, repeats=1, breakdown_steps=1)
    assert muon["breakdown_s"]["lmo"] > 0
    with pytest.raises(ValueError, match="key=value"):
        _ = parse_cases("tiny:ft:zo-sgd@rademacher")[0].method_options
