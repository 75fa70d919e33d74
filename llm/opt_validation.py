r"""OPT-1.3B / SST-2 validation: the JAGUAR paper's Tables 2 and 3, measured with our optimizers.

One command runs the peers' protocol (ZO-Bench / JAGUAR, ``docs/theory.md`` §6.2):
OPT-1.3B on SST-2, 1,000 train / 500 dev / 1,000 eval examples, batch 16, 20,000 steps,
evaluation every 1,000 steps, best-dev checkpoint, full fine-tuning (FT) and LoRA (r 8, alpha 16),
for ZO-SGD, ZO-SGD-Sign, ZO-AdaMM, JAGUAR SignSGD, ZO-Muon, JAGUAR Muon, AdaNAGED, the direction
policies (ZO-SGD + LDSD, ZO-SGD + GV) and FO-SGD, and writes

* ``results.json``  every measurement and training summary (merged with an existing file in ``--out``,
  so a ``--measure-only`` run and a training run build up one set of tables);
* ``tables.md``     accuracy in the format of JAGUAR Table 2 and peak memory in the format of JAGUAR
  Table 3 (rows = methods, columns FT / LoRA, GB at the run's dtype), the paper's numbers beside ours,
  plus a throughput table (forward time, step time, their ratio, steps/s, forward passes/s).

This module is the command line; the methods are in :mod:`llm.opt_methods`, the runs (protocol,
measurement, training, results file) in :mod:`llm.opt_runs`, the tables in :mod:`llm.opt_tables` and the
memory readings in :mod:`llm.memory`: runs are built by :func:`llm.train.build_run`
(the data protocol, the model, LoRA, the objective, the optimizer from the registry), trained by
:func:`llm.train.train` (the project's loop: best-dev checkpoint, eval split, metrics.jsonl), and a
step is one ``optimizer.step(closure)`` with the closures of :mod:`llm.objective`.

Measurement (``--measure-only``, or before training). Per mode, one model is built and shared by
every method (the weights' values do not change memory or time); per method:

* *inference peak*: ``max_memory_allocated`` over ``--measure-forwards`` forward passes of the ZO closure
  (eval mode, ``torch.inference_mode``) after ``reset_peak_memory_stats``;
* *step peak*: the larger of the *first-step peak* (``max_memory_allocated`` over the first optimizer
  step after ``reset_peak_memory_stats``: lazily allocated state and one-time checks count) and the
  *steady peak* (reset again, over the timed steps): the number comparable with JAGUAR Table 3,
  "peak memory" of a training run; both parts are recorded;
* *forward time* and *step time*: medians, with the device synchronised around each call; their ratio
  is the price of a step in forward passes (a two-point ZO step costs at least 2).

The CUDA-only calls live in :class:`llm.memory.CudaMeter`; :class:`llm.memory.Meter` measures the process's resident
set (``VmHWM``, reset through ``/proc/self/clear_refs``) so that the whole script runs, and is tested,
on a CPU at tiny size.

Reference numbers: Petrov, Evseev, Veprikov, Beznosikov et al., "Leveraging Coordinate Momentum in
SignSGD and Muon: Memory-Optimized Zero-Order LLM Fine-Tuning" (JAGUAR; arXiv 2506.04430), Tables 2
and 3 of the PDF committed to ``intsystems/ZO-LLM-FineTuning`` @ 0da8dd2, as quoted in
``docs/theory.md`` §6.3. Their baselines' accuracies are copied from
ZO-Bench (Zhang et al., ICML 2024); their memory is "half precision (F16)" for ZO and mixed precision
(fp16 + fp32 master weights) for FO.

Example (the exact commands of the committed results are in ``results/llm/opt13b/README.md``)::

    python -m llm.opt_validation --model preset:1.3b --data-dir data/sst2 --measure-only \
        --device cuda --dtype fp16 --out results/llm/opt13b
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from llm.memory import CudaMeter, Meter, make_meter
from llm.opt_methods import DEFAULT_METHODS, METHODS, MODES, MethodEntry, parse_methods, parse_modes
from llm.opt_runs import MEASURE_TOKENIZERS, Protocol, measure_mode, merge_record, run_validation, train_method
from llm.opt_tables import (
    JAGUAR_SOURCE,
    JAGUAR_TABLE2,
    JAGUAR_TABLE3,
    render_tables,
)

#: the meters of :mod:`llm.memory` under the names this script has always exported
DeviceMeter = Meter
CpuMeter = Meter

__all__ = [
    "JAGUAR_SOURCE",
    "JAGUAR_TABLE2",
    "JAGUAR_TABLE3",
    "MethodEntry",
    "METHODS",
    "DEFAULT_METHODS",
    "MODES",
    "DeviceMeter",
    "CpuMeter",
    "CudaMeter",
    "make_meter",
    "measure_mode",
    "train_method",
    "render_tables",
    "merge_record",
    "parse_methods",
    "parse_modes",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm.opt_validation",
        description="OPT-1.3B / SST-2 validation: JAGUAR Tables 2 (accuracy) and 3 (memory), measured with zotheory.",
    )
    p.add_argument(
        "--model", default="preset:1.3b", help="local checkpoint folder or preset:NAME (random weights) [preset:1.3b]"
    )
    p.add_argument(
        "--data-dir", default=None, help="folder with SST-2 train.tsv/dev.tsv (omit: the `datasets` library)"
    )
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma list of {', '.join(METHODS)}; or default (the JAGUAR table rows, the default for "
        "training) or all (every registry method, the default of --measure-only)",
    )
    p.add_argument("--modes", default="ft,lora", help="comma list of ft, lora [ft,lora]")
    p.add_argument("--steps", type=int, default=20000, help="training steps per run [20000]")
    p.add_argument("--eval-every", type=int, default=1000, help="dev evaluation interval [1000]")
    p.add_argument("--measure-only", action="store_true", help="memory and step time only, no training")
    p.add_argument("--no-measure", action="store_true", help="train only")
    p.add_argument("--measure-steps", type=int, default=5, help="timed optimizer steps per method [5]")
    p.add_argument("--measure-forwards", type=int, default=5, help="timed forward passes per method [5]")
    p.add_argument(
        "--time-cap",
        type=float,
        default=120.0,
        help="seconds per method: caps the timed steps, and the training steps when a step time is known [120]",
    )
    p.add_argument("--num-train", type=int, default=1000)
    p.add_argument("--num-dev", type=int, default=500)
    p.add_argument("--num-eval", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp16", choices=("fp16", "bf16", "fp32"))
    p.add_argument(
        "--measure-tokenizer",
        default="auto",
        choices=("auto", *MEASURE_TOKENIZERS),
        help="tokenizer of the measurement batch; auto: sst2-bpe for preset: models, else loop [auto]",
    )
    p.add_argument("--keep-checkpoints", action="store_true", help="keep best.pt/last.pt of training runs")
    p.add_argument("--out", required=True, help="output folder: results.json, tables.md, runs/")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: 0 when every run was attempted (failures are recorded), 2 for bad arguments."""
    args = build_parser().parse_args(argv)
    try:
        entries = parse_methods(args.methods or ("all" if args.measure_only else "default"))
        modes = parse_modes(args.modes)
        if args.measure_only and args.no_measure:
            raise ValueError("--measure-only and --no-measure exclude each other")
        for name in ("steps", "measure_steps", "measure_forwards", "batch_size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if not (args.time_cap > 0):
            raise ValueError(f"--time-cap must be > 0, got {args.time_cap}")
        meter = make_meter(args.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    protocol = Protocol(
        model=args.model,
        data_dir=args.data_dir,
        num_train=args.num_train,
        num_dev=args.num_dev,
        num_eval=args.num_eval,
        batch_size=args.batch_size,
        steps=args.steps,
        eval_every=args.eval_every,
        max_length=args.max_length,
        dtype=args.dtype,
        device=str(meter.device),
        seed=args.seed,
        measure_tokenizer=(
            ("sst2-bpe" if args.model.startswith("preset:") else "loop")
            if args.measure_tokenizer == "auto"
            else args.measure_tokenizer
        ),
    )
    command = "python -m llm.opt_validation " + " ".join(sys.argv[1:] if argv is None else argv)
    results = run_validation(
        protocol,
        entries,
        modes,
        meter,
        Path(args.out),
        command=command,
        measure=not args.no_measure,
        train=not args.measure_only,
        forwards=args.measure_forwards,
        measure_steps=args.measure_steps,
        time_cap=args.time_cap,
        keep_checkpoints=args.keep_checkpoints,
    )
    print(render_tables(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
