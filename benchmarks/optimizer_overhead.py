"""Optimizer overhead: extra peak memory and step time of every registered optimizer on a ~50M model (CPU).

Model: 7 transformer-MLP-like blocks with GPT-2-small shapes (``768 -> 2304``, ``768 -> 768``,
``768 -> 3072``, ``3072 -> 768``, with biases): 49.6M float32 parameters, largest tensor 768 x 3072
(9.4 MB). Closure: mean-squared error of the stack on a fixed batch of ``--batch`` rows (the rows play
the role of tokens: the forward costs ``2 * batch * params`` flop).

Per optimizer, in a fresh subprocess (so that peaks do not mix), with
``MALLOC_MMAP_THRESHOLD_=65536`` (every allocation of 64 KiB or more is mmapped and returned to the OS
when freed, so the resident set follows the live tensors):

* ``closure_s``: median time of one closure evaluation;
* ``step_s``: median time of one ``step`` over ``--steps`` steps after one warm-up step (Newton–Schulz,
  SVD and QR-heavy methods over ``--slow-steps``), and ``ratio = step_s / (evals_per_step * closure_s)``;
  ``overhead_s = step_s - evals_per_step * closure_s`` and ``batch_for_10pct``, the batch at which that
  overhead would be 10% of the forward passes (the forward scales linearly with the batch, the overhead
  does not);
* memory: the peak resident set (``VmHWM`` of ``/proc/self/status``, reset by writing 5 to
  ``/proc/self/clear_refs``) during the timed steps, minus the peak while only evaluating the closure
  before the first step: ``extra_peak_bytes`` (it includes the state allocated by the warm-up step). Torch has
  no CPU allocator statistics, so the resident set is the measure (read by :mod:`llm.memory`);
  ``state_bytes`` (``optimizer.state_bytes()``, measured) and ``declared_state_bytes`` (registry) are listed
  next to it, and ``transient_bytes = extra_peak_bytes - state_bytes`` is the scratch a step needs.
  Targets: ZO-SGD extra memory <= the largest tensor, overhead <= 10% of the forward passes.

Half-precision drift (reported, not asserted; the tests assert the float32 bound): each optimizer with
lr = 0 for ``--drift-steps`` (100) steps on a 2-layer 256-wide float16 / bfloat16 model, radius 1e-3:
``max |x_T - x_0|``, the same in units of ``eps(dtype) * max(|x_0|, 1e-3)`` (the spacing of floating-point
numbers where the perturbed values ``x +- r z`` live), the fraction of entries changed, and the same with
``exact_restore=True`` (expected 0).

Run: ``python benchmarks/optimizer_overhead.py`` (about 5 minutes on 2 cores; ``--only NAME,...`` to
rerun some entries, which are merged into the existing JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llm.memory import process_peak_rss, reset_process_peak
from zotheory.optim.registry import OPTIMIZERS, declared_state_bytes

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
OUT = RESULTS / "optimizer_overhead.json"
SLOW = ("muon", "lmo")  # names containing these orthogonalise / decompose full matrices every step


class Block(nn.Module):
    """qkv-like, out-like and MLP linears with GPT-2-small shapes (attention replaced by a sum)."""

    def __init__(self, width: int = 768) -> None:
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.qkv(h).view(h.shape[0], 3, -1).sum(1)
        h = h + self.out(a)
        return h + self.proj(torch.nn.functional.gelu(self.fc(h)))


def build_model(blocks: int, width: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """``blocks`` :class:`Block` s of ``width``, in eval mode, initialised from ``seed``."""
    torch.manual_seed(seed)  # model initialisation only (the optimizers never touch the global RNG)
    model = nn.Sequential(*[Block(width) for _ in range(blocks)]).to(dtype)
    model.eval()
    return model


def rss_peak() -> int:
    """The process's peak resident set (:func:`llm.memory.process_peak_rss`); this benchmark needs Linux."""
    peak = process_peak_rss()
    if peak is None:
        raise RuntimeError("the peak resident set (VmHWM of /proc/self/status) cannot be read: run on Linux")
    return peak


def reset_peak() -> None:
    """Reset the peak resident set to the current one (:func:`llm.memory.reset_process_peak`)."""
    if not reset_process_peak():
        raise RuntimeError("/proc/self/clear_refs cannot be written: the peak resident set cannot be reset")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def median_time(fn: Any, n: int) -> float:
    """Median wall time of ``n`` calls of ``fn``."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------- worker
def worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time and memory of optimizer ``name`` (run in a fresh subprocess, so that peaks do not mix)."""
    spec = OPTIMIZERS[name]
    model = build_model(args.blocks, 768)
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in params)
    largest = max(p.numel() * p.element_size() for p in params)
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(args.batch, 768, generator=gen)
    targets = torch.randn(args.batch, 768, generator=gen)

    def closure() -> torch.Tensor:
        return ((model(inputs) - targets) ** 2).mean()

    config: dict[str, Any] = {"lr": 1e-6, "eps": 1e-3}
    # build the optimizer first: torch.optim.Optimizer's first construction imports torch._dynamo
    # (~70 MB of resident modules), which is not optimizer memory
    opt = spec.make(list(model.named_parameters()), **config)
    with torch.no_grad():
        closure()
        reset_peak()
        closure_s = median_time(closure, 2)
        peak_closure = rss_peak()
    slow = any(s in name for s in SLOW)
    n_steps = args.slow_steps if slow else args.steps
    opt.step(closure)  # warm-up: allocates the state (which stays resident) and checks the radius once
    reset_peak()
    step_times = []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        opt.step(closure)
        step_times.append(time.perf_counter() - t0)
    peak_step = rss_peak()
    step_s = statistics.median(step_times)
    evals = opt.evals_per_step
    overhead_s = step_s - evals * closure_s
    state = opt.state_bytes()
    extra = peak_step - peak_closure
    return {
        "name": name,
        "params": n_params,
        "param_bytes": n_params * 4,
        "largest_tensor_bytes": largest,
        "batch": args.batch,
        "evals_per_step": evals,
        "closure_s": closure_s,
        "steps_timed": n_steps,
        "step_s": step_s,
        "ratio": step_s / (evals * closure_s),
        "overhead_s": overhead_s,
        "batch_for_10pct": math.ceil(args.batch * overhead_s / (0.1 * evals * closure_s)) if overhead_s > 0 else 0,
        "extra_peak_bytes": extra,
        "state_bytes": state,
        "declared_state_bytes": declared_state_bytes(spec, params, config),
        "transient_bytes": extra - state,
        "meets_memory_target": extra <= largest if spec.state_multiple(config) == 0 else None,
        "meets_time_target": step_s <= 1.1 * evals * closure_s,
    }


def drift(name: str, dtype: torch.dtype, steps: int) -> dict[str, Any]:
    """Parameter drift of optimizer ``name`` at lr = 0 in ``dtype`` over ``steps`` steps (module docstring)."""
    out: dict[str, Any] = {"name": name, "dtype": str(dtype).removeprefix("torch."), "steps": steps}
    for exact in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 256)).to(dtype).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        x0 = [p.detach().clone() for p in model.parameters()]
        inputs = torch.randn(32, 256, generator=torch.Generator().manual_seed(2)).to(dtype)

        def closure(model: nn.Module = model, inputs: torch.Tensor = inputs) -> torch.Tensor:
            return model(inputs).float().pow(2).mean()

        opt = OPTIMIZERS[name].make(list(model.named_parameters()), lr=0.0, eps=1e-3, exact_restore=exact)
        with torch.no_grad():
            for _ in range(steps):
                opt.step(closure)
        diffs = [(p.detach().double() - x.double()).abs() for p, x in zip(model.parameters(), x0, strict=False)]
        # resolution where the arithmetic happens: at max(|x|, r) (the perturbed values x +- r z)
        spacing = [torch.finfo(dtype).eps * torch.clamp(x.double().abs(), min=1e-3) for x in x0]
        key = "exact_restore" if exact else "arithmetic_restore"
        out[key] = {
            "max_abs_drift": max(float(d.max()) for d in diffs),
            "mean_abs_drift": float(sum(d.sum() for d in diffs) / sum(d.numel() for d in diffs)),
            "max_drift_in_spacings": max(float((d / s).max()) for d, s in zip(diffs, spacing, strict=False)),
            "changed_fraction": float(sum((d > 0).sum() for d in diffs) / sum(d.numel() for d in diffs)),
        }
    return out


# ---------------------------------------------------------------------------------------------- driver
def main() -> None:
    """The command line: run every worker, merge into the JSON, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--slow-steps", type=int, default=1)
    parser.add_argument("--drift-steps", type=int, default=100)
    parser.add_argument("--only", default="", help="comma-separated registry names (default: all)")
    parser.add_argument("--skip-drift", action="store_true")
    parser.add_argument("--drift-only", action="store_true", help="only the half-precision drift section")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON to update (entries are merged)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.worker:
        with torch.no_grad():
            print(json.dumps(worker(args.worker, args)))
        return

    names = [n for n in args.only.split(",") if n] or sorted(OPTIMIZERS)
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown:
        raise SystemExit(f"unknown optimizer(s) {unknown}; registered: {sorted(OPTIMIZERS)}")
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = {r["name"]: r for r in previous.get("rows", [])}
    drifts = {(r["name"], r["dtype"]): r for r in previous.get("half_precision_drift", [])}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    print(
        f"{'optimizer':22s} {'closure s':>9s} {'step s':>8s} {'ratio':>6s} {'ovh s':>6s} {'B@10%':>7s} "
        f"{'extra MB':>9s} {'state MB':>9s} {'declared':>9s} {'scratch MB':>10s}",
        flush=True,
    )
    for name in [] if args.drift_only else names:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--blocks",
            str(args.blocks),
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--slow-steps",
            str(args.slow_steps),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            print(f"{name}: worker failed\n{proc.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows[name] = row
        mb = 2.0**20
        print(
            f"{name:22s} {row['closure_s']:9.3f} {row['step_s']:8.3f} {row['ratio']:6.2f} {row['overhead_s']:6.2f} "
            f"{row['batch_for_10pct']:7d} {row['extra_peak_bytes'] / mb:9.1f} {row['state_bytes'] / mb:9.1f} "
            f"{row['declared_state_bytes'] / mb:9.1f} {row['transient_bytes'] / mb:10.1f}",
            flush=True,
        )
    if not args.skip_drift:
        print(
            f"\nlr = 0 drift over {args.drift_steps} steps (radius 1e-3), "
            "max |x_T - x_0| and in spacings at max(|x_0|, r)"
        )
        for name in names:
            for dtype in (torch.float16, torch.bfloat16):
                r = drift(name, dtype, args.drift_steps)
                drifts[(name, r["dtype"])] = r
                a, e = r["arithmetic_restore"], r["exact_restore"]
                print(
                    f"{name:22s} {r['dtype']:9s} max {a['max_abs_drift']:.3g} ({a['max_drift_in_spacings']:.1f} "
                    f"spacings, {100 * a['changed_fraction']:.1f}% entries changed); exact_restore max "
                    f"{e['max_abs_drift']:.3g}",
                    flush=True,
                )
    result = {
        **{k: v for k, v in previous.items() if k not in ("rows", "half_precision_drift")},
        "benchmark": "optimizer_overhead",
        "model": f"{args.blocks} blocks of GPT-2-small-shaped linears (768/2304/3072), float32, CPU",
        "memory_method": "peak RSS (VmHWM, reset via /proc/self/clear_refs) while stepping minus while only "
        "evaluating the closure, fresh subprocess per optimizer, MALLOC_MMAP_THRESHOLD_=65536",
        "rows": [rows[k] for k in sorted(rows)],
        "half_precision_drift": [drifts[k] for k in sorted(drifts)],
    }
    if not args.drift_only:
        result["timing_run"] = {
            "command": " ".join(["python benchmarks/optimizer_overhead.py", *sys.argv[1:]]),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
            "cpu_model": cpu_model(),
            "load_average_at_end": os.getloadavg(),
            "platform": platform.platform(),
        }
    if not args.skip_drift:
        result["drift_run"] = {
            "command": " ".join(["python benchmarks/optimizer_overhead.py", *sys.argv[1:]]),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
