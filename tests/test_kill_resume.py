"""SIGKILL ``python -m llm.finetune`` at a random step and during a checkpoint write, resume it, and
compare weights, optimizer state, metrics and results with an uninterrupted run, bit for bit (issue 15).

The kill during a write is made deterministic by a test-only wrapper (``_kill_hook``) that lets
``torch.save`` write the temporary checkpoint and then SIGKILLs its own process before the rename.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from test_llm_train import _write_split

from llm import checkpoint as ckpt
from llm.config import FinetuneConfig
from llm.train import read_metrics, train

REPO = Path(__file__).resolve().parents[1]
STEPS = 8
HOOK = """
import os, runpy, signal, sys
import torch
real_save = torch.save
def save(obj, f, *a, **k):
    real_save(obj, f, *a, **k)
    if obj.get("kind") == "resume" and obj.get("step") == int(os.environ["KILL_SAVE_AT_STEP"]):
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # the temporary is written, the rename has not happened
torch.save = save
sys.argv = ["llm.finetune", *sys.argv[1:]]
runpy.run_module("llm.finetune", run_name="__main__")
"""
VOLATILE = {"wall_time", "wall_time_s", "train_time_s", "peak_memory_bytes", "resumes"}


def _args(data_dir: Path, out: Path) -> list[str]:
    return [
        "--model", "preset:tiny", "--data-dir", str(data_dir), "--num-train", "32", "--num-dev", "8", "--num-eval", "8",
        "--max-length", "24", "--batch-size", "8", "--eval-batch-size", "8", "--steps", str(STEPS), "--eval-every", "4",
        "--save-every", "1", "--method", "zo-sgd-mmt", "--opt", "lr=1e-3", "--opt", "momentum=0.9", "--seed", "5",
        "--no-progress", "--threads", "1", "--out", str(out),
    ]  # fmt: skip


def _env(tmp: Path) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=f"{REPO}{os.pathsep}{tmp}")


def _train_records(out: Path) -> list[dict]:
    p = out / "metrics.jsonl"
    return [r for r in read_metrics(p) if r["type"] == "train"] if p.exists() else []


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def test_sigkill_at_a_random_step_and_during_a_save_resumes_bit_for_bit(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_split(data_dir / "train.tsv", 60, 0)
    _write_split(data_dir / "dev.tsv", 20, 1)
    rng = random.Random(20240615)
    kill_step = rng.randint(1, 3)  # an outside SIGKILL once this many steps are logged
    save_step = rng.randint(kill_step + 2, STEPS - 1)  # then a SIGKILL inside the write of this step's checkpoint
    (tmp_path / "_kill_hook.py").write_text(HOOK)
    out = tmp_path / "run"
    env = _env(tmp_path)

    # 1. an outside SIGKILL at a random step
    proc = subprocess.Popen([sys.executable, "-m", "llm.finetune", *_args(data_dir, out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 240
    while len(_train_records(out)) < kill_step and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""
    killed_at = ckpt.load_checkpoint(out / "last.pt")["step"]
    assert killed_at < STEPS

    # 2. resume; SIGKILL during the checkpoint write of save_step
    p = subprocess.run([sys.executable, "-c", "import _kill_hook", *_args(data_dir, out), "--resume"], cwd=REPO,
                       env=dict(env, KILL_SAVE_AT_STEP=str(save_step)),
                       capture_output=True, text=True, timeout=240)  # fmt: skip
    assert p.returncode == -signal.SIGKILL, p.stderr
    stale = [f for f in out.iterdir() if f.name.startswith(".last.pt.") and ".tmp" in f.name]
    assert stale, "the kill during the write left no temporary: the test did not kill mid-save"
    assert ckpt.load_checkpoint(out / "last.pt")["step"] == save_step - 1  # the previous checkpoint is intact

    # 3. resume to the end
    p = subprocess.run([sys.executable, "-m", "llm.finetune", *_args(data_dir, out), "--resume"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=240)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert not any(f.exists() for f in stale), "the temporaries of the killed save were not removed"

    # the uninterrupted reference run, in this process
    torch.set_num_threads(1)
    ref_out = tmp_path / "ref"
    from llm.finetune import build_parser, config_from_args

    cfg: FinetuneConfig = config_from_args(build_parser().parse_args(_args(data_dir, ref_out)))
    train(cfg)

    a, b = ckpt.load_checkpoint(out / "last.pt"), ckpt.load_checkpoint(ref_out / "last.pt")
    assert a["step"] == b["step"] == STEPS
    assert a["trainable"].keys() == b["trainable"].keys()
    assert all(torch.equal(a["trainable"][k], b["trainable"][k]) for k in a["trainable"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for key in sa:
        for k, v in sa[key].items():
            w = sb[key][k]
            assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w, (key, k)
    assert _strip(read_metrics(out / "metrics.jsonl")) == _strip(read_metrics(ref_out / "metrics.jsonl"))
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (out, ref_out))
    assert {k: v for k, v in ra.items() if k not in VOLATILE} == {k: v for k, v in rb.items() if k not in VOLATILE}
