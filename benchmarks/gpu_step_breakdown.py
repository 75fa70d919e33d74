"""Where a ZO-SGD step's time goes at OPT scale: forward, one perturbation pass, RNG, launch overhead.

Prints a table and writes JSON. Run on a GPU:
    PYTHONPATH=. python benchmarks/gpu_step_breakdown.py --preset opt-1.3b --dtype fp16 --out results.json
All numbers are medians of repeated timings with torch.cuda.synchronize() around each call;
ratios are measured side by side in one process.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import torch

from llm.models import build_opt_from_preset, resolve_dtype
from zotheory.directions import Gaussian, Rademacher
from zotheory.optim import ZOSGD


def _timed(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _mean_last_logit(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The ZO closure timed here: mean of the last position's logits on ``ids`` (inference mode)."""
    with torch.inference_mode():
        return model(input_ids=ids, logits_to_keep=1).logits.float().mean()


def _draw_all(fam: Gaussian | Rademacher, params: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """One direction tensor per parameter (the RNG cost of a step, without the parameter writes)."""
    return [
        fam.tensor_direction(tuple(p.shape for p in params), i, 1, 0, p.dtype, device) for i, p in enumerate(params)
    ]


def main() -> None:
    """Command line: time forward, step, perturbation pass and direction draws per sequence length; write JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="opt-1.3b")
    ap.add_argument("--dtype", default="fp16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-lens", default="32,128,512")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="gpu_step_breakdown.json")
    args = ap.parse_args()
    device = torch.device(args.device)
    model = build_opt_from_preset(args.preset, dtype=args.dtype, seed=0).to(device).eval()
    params = list(model.parameters())
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for seq in [int(s) for s in args.seq_lens.split(",")]:
        ids = torch.randint(4, model.config.vocab_size, (args.batch, seq), generator=gen, device=device)
        closure = functools.partial(_mean_last_logit, model, ids)
        for family in ("gaussian", "rademacher"):
            opt = ZOSGD(params, lr=0.0, eps=1e-3, directions=family)
            opt.step(closure)  # warm-up (radius check, allocator)
            fam = Gaussian() if family == "gaussian" else Rademacher()
            t_fwd = _timed(closure, args.repeats * 2, device)
            t_step = _timed(functools.partial(opt.step, closure), args.repeats, device)
            with torch.no_grad():
                t_pass = _timed(functools.partial(fam.add_, params, 1, 0, 0.0 + 1e-3), args.repeats, device)
            t_rng = _timed(functools.partial(_draw_all, fam, params, device), args.repeats, device)
            row = {
                "seq_len": seq,
                "family": family,
                "forward_ms": 1e3 * t_fwd,
                "step_ms": 1e3 * t_step,
                "step_over_two_forwards": t_step / (2 * t_fwd),
                "perturbation_pass_ms": 1e3 * t_pass,
                "direction_draw_only_ms": 1e3 * t_rng,
            }
            rows.append(row)
            print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    env = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "preset": args.preset,
        "dtype": str(resolve_dtype(args.dtype)),
        "batch": args.batch,
        "tensors": len(params),
    }
    with open(args.out, "w") as fh:
        json.dump({"environment": env, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
