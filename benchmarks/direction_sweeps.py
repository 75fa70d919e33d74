r"""Cost of one in-place direction sweep (``family.add_(params, seed, j, alpha)``) per parameter, side by side.

A zeroth-order step regenerates each direction three times (perturb ``+r``, perturb ``-2r``, restore folded
into the update), so a sweep must cost well under the forward time divided by ``3 x`` the parameter count
for the step to cost "its forward passes and nothing more". For the parameter shapes of a real model, every
repeat times one sweep of every (family, CPU chunk of the table families) variant in turn, so that they share
the machine's load; the report gives the median ns per parameter, in wall time and in the thread's CPU time
(``time.thread_time``, much less inflated on an oversubscribed machine). A 0-d tensor ``alpha`` (what an update
passes, no host synchronisation) and a Python ``alpha`` (what a perturbation passes) alternate.

Workloads: ``minilm`` (all-MiniLM-L6-v2 with a 2-way head, 22.7M parameters, offline), ``opt-125m`` (the
OPT-125m shape, random weights, 125M parameters).

Example::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/direction_sweeps.py --workload minilm \\
        --out results/benchmarks/direction_sweeps_minilm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from zotheory import atomicio
from zotheory import directions as D


def _params(workload: str) -> list[torch.Tensor]:
    from llm import models

    if workload == "minilm":
        model, _ = models.load_minilm_classifier(2, seed=0)
    else:
        model = models.build_opt_from_preset(models.get_opt_preset("opt-125m"), dtype="fp32", seed=0)
    return [p.detach() for _, p in models.named_trainable_parameters(model)]


def _code_version() -> dict[str, str]:
    """The ``zotheory`` that was timed: its path and the commit of its git tree (so that a run against an older
    checkout, ``PYTHONPATH=OLD_TREE``, says which code it timed)."""
    root = Path(D.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"path": str(root), "commit": commit, "dirty": "unknown" if commit == "unknown" else str(_dirty(root))}


def _dirty(root: Path) -> bool:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "zotheory"], capture_output=True, text=True
        )
    except OSError:
        return True
    return bool(out.stdout.strip())


def _variants(families: list[str], chunks: list[int]) -> list[tuple[str, str, int | None]]:
    """(label, family, TABLE_CPU_CHUNK or None) for every family; table families once per chunk."""
    out: list[tuple[str, str, int | None]] = []
    for name in families:
        if name in ("rademacher", "qgaussian") and hasattr(D, "TABLE_CPU_CHUNK"):
            out += [(f"{name} chunk 2^{c.bit_length() - 1}", name, c) for c in chunks]
        else:
            out.append((name, name, None))
    return out


def main(argv: list[str] | None = None) -> int:
    """Time the sweeps, write the JSON report, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=("minilm", "opt-125m"), default="minilm")
    ap.add_argument("--families", default="gaussian,rademacher,qgaussian")
    ap.add_argument("--chunks", default="32768,131072,524288", help="TABLE_CPU_CHUNK values to compare")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="JSON path")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = _params(args.workload)
    numel = sum(p.numel() for p in params)
    variants = _variants(args.families.split(","), [int(c) for c in args.chunks.split(",")])
    default_chunk = getattr(D, "TABLE_CPU_CHUNK", None)  # absent from checkouts before the table families
    times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    alpha_t = torch.tensor(1e-3, dtype=torch.float64)
    with torch.no_grad():
        for k in range(args.repeats + 1):  # the first round warms caches and buffers and is not kept
            for label, name, chunk in variants:
                if chunk is not None:
                    D.TABLE_CPU_CHUNK = chunk
                family = D.get_directions(name)
                alpha = alpha_t if k % 2 else 1e-3
                t0, c0 = time.perf_counter(), time.thread_time()
                family.add_(params, 11, k, alpha)
                elapsed, elapsed_cpu = time.perf_counter() - t0, time.thread_time() - c0
                family.add_(params, 11, k, -alpha)  # back where it was (up to rounding)
                if k:
                    times[label].append(elapsed)
                    cpu[label].append(elapsed_cpu)
            print(
                f"[{k}/{args.repeats}] " + " ".join(f"{lb} {t[-1] / numel * 1e9:.2f}" for lb, t in times.items() if t)
            )
    if default_chunk is not None:
        D.TABLE_CPU_CHUNK = default_chunk
    rows = [
        {
            "variant": label,
            "family": name,
            "table_cpu_chunk": chunk,
            "sweep_median_s": statistics.median(times[label]),
            "ns_per_parameter_median": statistics.median(times[label]) / numel * 1e9,
            "sweep_s": times[label],
            "cpu_ns_per_parameter_median": statistics.median(cpu[label]) / numel * 1e9,
            "sweep_cpu_s": cpu[label],
        }
        for label, name, chunk in variants
    ]
    report = {
        "what": "one in-place sweep family.add_(params, seed, j, alpha), median over repeats, ns per parameter",
        "workload": args.workload,
        "zotheory": _code_version(),
        "parameters": numel,
        "tensors": len(params),
        "command": "python benchmarks/direction_sweeps.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {"repeats": args.repeats, "threads": torch.get_num_threads(), "dtype": "fp32"},
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(out, json.dumps(report, indent=2) + "\n")
    print("| variant | ns / parameter, wall | CPU time |\n|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['ns_per_parameter_median']:.2f} | {r['cpu_ns_per_parameter_median']:.2f} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
