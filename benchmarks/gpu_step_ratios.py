"""The GPU rows of the step-time table in one ~5-minute run: ``PYTHONPATH=. python benchmarks/gpu_step_ratios.py``.

OPT-1.3B shape (random weights), fp16, batch 16 x 27 tokens (the JAGUAR/MeZO SST-2 setting), full fine-tuning
for ZO-SGD (Gaussian and Rademacher), JAGUAR SignSGD, ZO-Muon, JAGUAR Muon (batched bf16 Newton–Schulz) and
AdaNAGED, and LoRA for ZO-SGD; each case in a fresh subprocess through ``llm.profile`` (peak memory, step /
forward ratio measured side by side, and the forward / sweeps / draws / lmo breakdown). Before that, a
microbenchmark of Newton–Schulz on the 144 hidden matrices of OPT-1.3B: per matrix in fp32 against one
batched bf16 chain per shape. Writes ``results/llm/profile_gpu_<card>.json`` and
``results/benchmarks/gpu_newton_schulz_<card>.json`` (the card's name is in both files).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch

from llm import profile
from zotheory.lmo import MUON_QUINTIC, newton_schulz
from zotheory.optim.muon import apply_update_rules_

CASES = [
    "opt-1.3b:ft:inference",
    "opt-1.3b:ft:zo-sgd",
    "opt-1.3b:ft:zo-sgd@directions=rademacher",
    "opt-1.3b:ft:jaguar-signsgd",
    "opt-1.3b:ft:zo-muon",
    "opt-1.3b:ft:jaguar-muon",
    "opt-1.3b:ft:adanaged",
    "opt-1.3b:lora:inference",
    "opt-1.3b:lora:zo-sgd",
]


def newton_schulz_bench(device: torch.device, repeats: int) -> dict:
    """Median seconds of Newton-Schulz over OPT-1.3B's matrices: one call per matrix (fp32) against the batched
    update rule (fp32 and bf16)."""
    d = 2048
    shapes = [(d, d)] * 4 * 24 + [(4 * d, d), (d, 4 * d)] * 24  # q, k, v, out; fc1, fc2 per layer
    gen = torch.Generator(device=device).manual_seed(0)
    ms = [torch.randn(s, generator=gen, device=device) for s in shapes]
    params = [torch.zeros(s, device=device, dtype=torch.float16) for s in shapes]
    group = {"lr": 1e-5, "update": "muon", "ns_coefficients": MUON_QUINTIC, "ns_steps": 5, "shape_scale": False}

    def timed(fn) -> float:
        out = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            out.append(time.perf_counter() - t0)
        return statistics.median(out)

    per_matrix = timed(lambda: [newton_schulz(m, MUON_QUINTIC, 5) for m in ms])
    batched = {}
    for ns_dtype in ("fp32", "bf16"):
        g = dict(group, ns_dtype=ns_dtype)
        batched[ns_dtype] = timed(lambda g=g: apply_update_rules_(zip(params, [g] * len(ms), ms, strict=False), g))
    return {
        "matrices": len(ms),
        "per_matrix_fp32_s": per_matrix,
        "batched_fp32_s": batched["fp32"],
        "batched_bf16_s": batched["bf16"],
    }


def main() -> int:
    """Command line: profile every case on the GPU, time Newton-Schulz, write both JSON files."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seq-len", type=int, default=27)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu_step_ratios.py needs a CUDA GPU")
    card = torch.cuda.get_device_name(0)
    slug = re.sub(r"[^a-z0-9]+", "_", card.lower()).strip("_")
    ns = dict(newton_schulz_bench(torch.device("cuda"), args.repeats), gpu=card, torch=torch.__version__)
    out_ns = Path(f"results/benchmarks/gpu_newton_schulz_{slug}.json")
    out_ns.parent.mkdir(parents=True, exist_ok=True)
    out_ns.write_text(json.dumps(ns, indent=2) + "\n")
    print(json.dumps(ns, indent=2), flush=True)
    return profile.main(
        [
            "--device",
            "cuda",
            "--dtype",
            "fp16",
            "--cases",
            ",".join(CASES),
            "--batch-size",
            "16",
            "--seq-len",
            str(args.seq_len),
            "--repeats",
            str(args.repeats),
            "--out",
            f"results/llm/profile_gpu_{slug}.json",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
