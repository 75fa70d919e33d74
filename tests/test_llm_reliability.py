"""Reliability of the fine-tuning loop and its CLI (issue 15): nothing lost, nothing corrupted,
no confusing failures. Tiny random OPT on a synthetic task, a few seconds per test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_llm_train import _write_split

from llm import checkpoint as ckpt
from llm.config import FinetuneConfig
from llm.train import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rel_sst2")
    _write_split(d / "train.tsv", 120, 0)
    _write_split(d / "dev.tsv", 40, 1)
    return d


def _cfg(data_dir: Path, **kw) -> FinetuneConfig:
    base = dict(
        model="preset:tiny", task="sst2", data_dir=str(data_dir), num_train=32, num_dev=8, num_eval=8,
        max_length=24, batch_size=8, eval_batch_size=8, steps=4, eval_every=2, threads=1, progress=False,
        opt={"lr": 1e-3},
    )  # fmt: skip
    base.update(kw)
    return FinetuneConfig(**base)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "llm.finetune", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=300
    )


def _cli_args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model", "preset:tiny", "--data-dir", str(data_dir), "--num-train", "32", "--num-dev", "8", "--num-eval", "8",
        "--max-length", "24", "--batch-size", "8", "--eval-batch-size", "8", "--no-progress", "--threads", "1",
        "--out", str(out), *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------------------
# 1. content hash of every checkpoint
# --------------------------------------------------------------------------------------


def _flip_bit_in_tensor_data(path: Path, needle: torch.Tensor) -> None:
    raw = bytearray(path.read_bytes())
    pattern = needle.numpy().tobytes()
    at = raw.find(pattern)
    assert at >= 0, "tensor bytes not found in the file"
    raw[at + 5] ^= 0x10
    path.write_bytes(bytes(raw))


def test_a_flipped_bit_is_detected_and_the_previous_checkpoint_is_offered(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    x1 = torch.arange(1.0, 65.0)
    x2 = torch.arange(101.0, 165.0)
    ckpt.atomic_save(
        {"format": ckpt.FORMAT, "version": ckpt.VERSION, "kind": "resume", "step": 1, "x": x1}, path, keep_previous=True
    )
    ckpt.atomic_save(
        {"format": ckpt.FORMAT, "version": ckpt.VERSION, "kind": "resume", "step": 2, "x": x2}, path, keep_previous=True
    )
    assert ckpt.load_checkpoint(path)["step"] == 2
    _flip_bit_in_tensor_data(path, x2)
    # torch itself reads the damaged file without complaint: the zip CRC is not verified
    assert torch.load(path, weights_only=True)["step"] == 2
    with pytest.raises(ckpt.CheckpointError, match=r"corrupt.*content hash") as e:
        ckpt.load_checkpoint(path)
    assert "last.prev.pt" in str(e.value) and "step 1" in str(e.value)
    prev = ckpt.load_checkpoint(tmp_path / "last.prev.pt")
    assert prev["step"] == 1 and torch.equal(prev["x"], x1)


def test_a_corrupt_resume_checkpoint_stops_the_resume_with_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    cfg = _cfg(data_dir, out=str(tmp_path / "run"), steps=4, eval_every=2)
    train(cfg, stop_at=2)
    last = tmp_path / "run" / "last.pt"
    t = ckpt.load_checkpoint(last)["trainable"]
    big = max(t.values(), key=lambda v: v.numel())
    _flip_bit_in_tensor_data(last, big.reshape(-1)[:16])
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        train(cfg, resume=True)


# --------------------------------------------------------------------------------------
# 2. nothing half-written: validate first, then a failed run is resumable or re-runnable
# --------------------------------------------------------------------------------------


def test_a_radius_below_the_fp16_resolution_is_refused_before_anything_is_written(
    tmp_path: Path, data_dir: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"radius .*1e-30"):
        train(_cfg(data_dir, dtype="fp16", opt={"lr": 1e-3, "eps": 1e-30}, out=str(out)))
    assert not out.exists()


def test_a_failure_at_step_1_leaves_a_resumable_run(tmp_path: Path, data_dir: Path) -> None:
    from llm.train import TrainingDiverged

    out = tmp_path / "out"
    cfg = _cfg(data_dir, opt={"lr": 1e6, "eps": 1e-3}, steps=3, out=str(out))
    with pytest.raises(TrainingDiverged) as first:
        train(cfg)
    step = re.match(r"step (\d+) of zo-sgd", str(first.value)).group(1)
    assert int(step) <= 2  # lr=1e6: the first or the second step overflows
    assert ckpt.load_checkpoint(out / "last.pt", kind="resume")["step"] == 0
    with pytest.raises(TrainingDiverged, match=rf"step {step} "):
        train(cfg, resume=True)  # resumable (and deterministic: the same step fails again)


def test_a_folder_left_by_a_failed_start_can_be_rerun(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "best.pt").write_bytes(b"stale")
    (out / "metrics.jsonl").write_text('{"type": "eval", "step": 0}\n')
    res = train(_cfg(data_dir, steps=2, out=str(out)))
    assert res["steps"] == 2
    from llm.train import read_metrics

    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"] == [1, 2]


# --------------------------------------------------------------------------------------
# 3. a NaN in a CLI run: one line, the step, the method, the advice, exit 3
# --------------------------------------------------------------------------------------


def test_cli_divergence_is_one_line_with_step_method_advice_and_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "cli"
    p = _cli(*_cli_args(data_dir, out, "--method", "zo-sgd", "--lr", "1e6", "--steps", "6", "--eval-every", "2"))
    assert p.returncode == 3, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert re.search(r"step \d+ of zo-sgd", lines[0]) and "non-finite" in lines[0]
    assert "--lr" in lines[0] and "on_nonfinite=skip" in lines[0]
    assert f"{out / 'last.pt'} (step " in lines[0]


# --------------------------------------------------------------------------------------
# 4. skip mode has limits; skipped steps are reported
# --------------------------------------------------------------------------------------


def test_skip_mode_stops_after_too_many_consecutive_skips(tmp_path: Path, data_dir: Path) -> None:
    from llm.train import TrainingDiverged

    cfg = _cfg(
        data_dir, opt={"lr": 1e6, "eps": 1e-3, "on_nonfinite": "skip"}, steps=50, eval_every=0, out=str(tmp_path / "r")
    )
    with pytest.raises(TrainingDiverged, match=r"5 consecutive steps skipped"):
        train(cfg)


def test_skip_limits_are_overridable_and_skips_are_reported(tmp_path: Path, data_dir: Path) -> None:
    cfg = _cfg(
        data_dir, opt={"lr": 1e6, "eps": 1e-3, "on_nonfinite": "skip"}, steps=6, eval_every=0,
        max_consecutive_skips=100, max_skips=100, out=str(tmp_path / "r"),
    )  # fmt: skip
    res = train(cfg)
    assert res["skipped_steps"] >= 5
    from llm.train import read_metrics

    recs = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r["type"] == "train"]
    assert sum(r["skipped"] for r in recs) == res["skipped_steps"]
    with pytest.raises(ValueError, match="max_skips must be >= 0"):
        FinetuneConfig(max_skips=-1)


# --------------------------------------------------------------------------------------
# 6. bad device / --out: clear errors
# --------------------------------------------------------------------------------------


def test_cli_bad_device_and_out_is_a_file(tmp_path: Path, data_dir: Path) -> None:
    p = _cli(*_cli_args(data_dir, tmp_path / "o", "--device", "foo", "--steps", "1"))
    assert p.returncode == 2 and "Traceback" not in p.stderr and "device 'foo'" in p.stderr, p.stderr
    f = tmp_path / "afile"
    f.write_text("x")
    p = _cli(*_cli_args(data_dir, f, "--steps", "1"))
    assert p.returncode == 2 and "Traceback" not in p.stderr and "is a file" in p.stderr, p.stderr
    assert f.read_text() == "x" and not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------
# 7. changed --steps on resume is recorded; an oversized batch is refused
# --------------------------------------------------------------------------------------


def test_resume_with_more_steps_is_recorded_and_fewer_is_refused(tmp_path: Path, data_dir: Path) -> None:
    cfg = _cfg(data_dir, steps=4, out=str(tmp_path / "r"))
    train(cfg, stop_at=2)
    with pytest.raises(ValueError, match=r"steps=1 .*already at step 2"):
        train(cfg.replace(steps=1), resume=True)
    res = train(cfg.replace(steps=5), resume=True)
    assert res["steps"] == 5
    assert res["resumes"] == [{"step": 2, "changed": {"steps": [4, 5]}}]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["steps"] == 5


def test_a_batch_larger_than_the_training_set_is_refused(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"batch_size 64 .* 32 training examples"):
        train(_cfg(data_dir, batch_size=64, out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------
# 11. temporaries left by a kill during a save are removed at the next start
# --------------------------------------------------------------------------------------


def test_stale_checkpoint_temporaries_are_removed_on_resume(tmp_path: Path, data_dir: Path) -> None:
    cfg = _cfg(data_dir, steps=4, out=str(tmp_path / "r"))
    train(cfg, stop_at=2)
    stale = tmp_path / "r" / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 4096)
    train(cfg, resume=True)
    assert not stale.exists()


# --------------------------------------------------------------------------------------
# 13. offline by default: a clear message without --data-dir
# --------------------------------------------------------------------------------------


def test_cli_without_data_dir_is_offline_and_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    p = _cli("--model", "preset:tiny", "--steps", "1", "--no-progress", "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "--data-dir" in p.stderr and "--allow-download" in p.stderr and "offline" in p.stderr
    assert not (tmp_path / "o").exists()
