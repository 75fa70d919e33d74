r"""Where an AdaNAGED step's time goes on a CPU: Newton–Schulz FLOPs against the forward passes.

AdaNAGED's default geometry takes the spectral LMO of every hidden matrix's momentum by Newton–Schulz
(``zotheory.lmo.newton_schulz``, Muon's quintic, 5 steps): for an ``m x n`` matrix (``m <= n`` after the
internal transpose) one pass costs ``5 (4 m^2 n + 2 m^3)`` flop (``A = X X^T``, ``B = b A + c A @ A``,
``X <- a X + B @ X``). This script counts, with ``torch.utils.flop_counter.FlopCounterMode``, the matrix
flop of one forward and of one whole AdaNAGED step on the workload of ``step_over_forward.py``, and times
(process CPU time, robust on a shared machine) one forward, one Newton–Schulz pass over all hidden matrices
in fp32, and the same pass with ``compute_dtype=bfloat16`` (informative only: bf16 changes the LMO far
beyond rounding), together with the CPU's bf16-relevant flags (``avx512_bf16``, ``amx_bf16``).

Example::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/adanaged_ns_cost.py --workload opt-125m \\
        --out results/benchmarks/adanaged_ns_cost_opt-125m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from zotheory import atomicio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import step_over_forward as sof  # noqa: E402  (the workloads of the step/forward benchmark)


def ns_pass_flop(shapes: list[tuple[int, int]], steps: int = 5) -> int:
    """``sum 5 (4 m^2 n + 2 m^3)`` over the matrices (``m = min``, ``n = max`` side): one quintic NS pass."""
    return sum(steps * (4 * min(s) ** 2 * max(s) + 2 * min(s) ** 3) for s in shapes)


def _cpu_seconds(fn: Any) -> float:
    c0 = time.process_time()
    fn()
    return time.process_time() - c0


def _cpu_flags() -> list[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return sorted(f for f in line.split(":", 1)[1].split() if "bf16" in f or f.startswith("amx"))
    return []


def main(argv: list[str] | None = None) -> int:
    """Count and time, write the JSON report, print a summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=("opt-125m", "minilm-sst2"), default="opt-125m")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    args.repeats = 1
    torch.set_num_threads(args.threads)

    from llm.models import named_trainable_parameters
    from llm.objective import make_closure
    from llm.train import build_optimizer, resolve_method
    from zotheory.lmo import newton_schulz
    from zotheory.optim.adanaged import default_norm_name

    model, batches, objective = (sof._opt125m if args.workload == "opt-125m" else sof._minilm)(args)
    named = named_trainable_parameters(model)
    hidden = [(n, p) for n, p in named if default_norm_name(p, n) == "spectral_ns"]
    shapes = [(int(p.shape[0]), int(p.numel() // p.shape[0])) for _, p in hidden]
    closure = make_closure(objective, batches[0])
    closure()
    with FlopCounterMode(display=False) as fc:
        closure()
    forward_flop = fc.get_total_flops()
    forward_cpu = min(_cpu_seconds(closure) for _ in range(3))

    opt: Any = build_optimizer(resolve_method("adanaged"), named, {}, seed=0)
    opt.step(closure)  # warm-up: state, radius checks
    with FlopCounterMode(display=False) as fc:
        opt.step(closure)
    step_flop = fc.get_total_flops()

    moms = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) for i, (_, p) in enumerate(hidden)]
    with torch.no_grad():
        ns_cpu = _cpu_seconds(lambda: [newton_schulz(m) for m in moms])
        ns_bf16_cpu = _cpu_seconds(lambda: [newton_schulz(m, compute_dtype=torch.bfloat16) for m in moms])
    report = {
        "what": "AdaNAGED step: matrix flop (FlopCounterMode) and CPU time of Newton-Schulz vs one forward",
        "workload": args.workload,
        "command": "python benchmarks/adanaged_ns_cost.py "
        + " ".join("DIR" if a == args.data_dir else a for a in (sys.argv[1:] if argv is None else argv)),
        "hidden_matrices": len(hidden),
        "hidden_matrix_shapes": sorted({f"{m}x{n}": shapes.count((m, n)) for m, n in shapes}.items()),
        "ns_pass_flop_formula": ns_pass_flop(shapes),
        "forward_flop": forward_flop,
        "adanaged_step_flop": step_flop,
        "adanaged_step_flop_over_forward": step_flop / forward_flop,
        "ns_passes_per_step_implied": (step_flop - 2 * forward_flop) / ns_pass_flop(shapes),
        "forward_cpu_s": forward_cpu,
        "ns_pass_fp32_cpu_s": ns_cpu,
        "ns_pass_bf16_cpu_s": ns_bf16_cpu,
        "ns_pass_fp32_over_forward_time": ns_cpu / forward_cpu,
        "cpu_bf16_flags": _cpu_flags(),
        "settings": {"threads": torch.get_num_threads(), "batch_size": args.batch_size, "seq_len": args.seq_len},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "loadavg": os.getloadavg()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(out, json.dumps(report, indent=2) + "\n")
    for key in (
        "forward_flop",
        "ns_pass_flop_formula",
        "adanaged_step_flop_over_forward",
        "ns_passes_per_step_implied",
        "forward_cpu_s",
        "ns_pass_fp32_cpu_s",
        "ns_pass_bf16_cpu_s",
        "cpu_bf16_flags",
    ):
        print(f"{key}: {report[key]}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
