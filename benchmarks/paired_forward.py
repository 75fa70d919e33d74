"""Paired evaluation against the in-place path, side by side on the CPU (:mod:`zotheory.paired`).

Per repeat, on the same batch and the same direction:

* ``two_forwards``: two plain forwards (the floor of an in-place central difference);
* ``in_place_pair``: the in-place estimate (perturb, forward, perturb, forward, restore: ``estimate_gradient``);
* ``paired``: one paired forward over the doubled batch (``paired_estimate``, weights never written);

and, per method, a whole ZO-SGD step through a plain and through a paired closure. Medians over repeats; the
ratios are per repeat. Workloads: ``opt-tiny`` .. ``opt-125m`` presets (random weights, synthetic batch) or the
pretrained all-MiniLM-L6-v2 on real SST-2 batches (``--data-dir``).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/paired_forward.py --workload opt-125m --batch-size 4 --seq-len 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from llm import data as D
from llm import models
from llm.models import named_trainable_parameters
from llm.objective import (
    CausalLMClassificationObjective,
    SequenceClassificationObjective,
    make_closure,
    make_paired_closure,
)
from llm.profile import synthetic_batch
from zotheory import atomicio
from zotheory.directions import get_directions
from zotheory.estimators import estimate_gradient
from zotheory.optim.zosgd import ZOSGD
from zotheory.paired import paired_estimate


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Command line: time plain against paired two-point evaluations and write the JSON; the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="opt-125m", help="an OPT preset name (opt-125m, tiny, ...) or minilm-sst2")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=32, help="OPT only")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--directions", default="gaussian")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.workload == "minilm-sst2":
        task = D.get_task("sst2")
        examples = D.load_examples(task, "train", args.data_dir)[: args.batch_size * args.repeats]
        model, tok = models.load_minilm_classifier(2, seed=0)
        collate = D.SequenceClassificationCollator.from_tokenizer(tok)
        enc = D.encode_sequence_classification(tok, examples, task, max_length=128)
        batches = list(D.iter_batches(enc, collate, args.batch_size))
        objective = SequenceClassificationObjective(model)
    else:
        preset = models.get_opt_preset(args.workload)
        model = models.build_opt_from_preset(preset, dtype="fp32", seed=0)
        batches = [
            synthetic_batch(preset.vocab_size, args.batch_size, args.seq_len, seed=k) for k in range(args.repeats)
        ]
        objective = CausalLMClassificationObjective(model)
    params = [p for _, p in named_trainable_parameters(model)]
    family = get_directions(args.directions)
    plain_opt = ZOSGD(params, lr=1e-7, eps=1e-3, directions=family, seed=0)
    paired_opt = ZOSGD(params, lr=1e-7, eps=1e-3, directions=family, seed=0)

    rows: dict[str, list[float]] = {
        k: [] for k in ("two_forwards", "in_place_pair", "paired", "zo_sgd_step", "zo_sgd_step_paired")
    }
    for k in range(args.repeats + 1):  # repeat 0 warms up and is dropped
        batch = batches[k % len(batches)]
        plain, paired = make_closure(objective, batch), make_paired_closure(objective, batch)
        t = {
            "two_forwards": _timed(lambda f=plain: (f(), f())),
            "in_place_pair": _timed(
                lambda f=plain, k=k: estimate_gradient(params, f, family, step_seed=k, radius=1e-3)
            ),
            "paired": _timed(lambda f=paired, k=k: paired_estimate(params, f, family, step_seed=k, radius=1e-3)),
            "zo_sgd_step": _timed(lambda f=plain: plain_opt.step(f)),
            "zo_sgd_step_paired": _timed(lambda f=paired: paired_opt.step(f)),
        }
        if k:
            for name, v in t.items():
                rows[name].append(v)
            print(f"[{k}/{args.repeats}] " + " ".join(f"{n} {v:.3f}s" for n, v in t.items()), flush=True)
    ratios = {n: [v / f for v, f in zip(rows[n], rows["two_forwards"], strict=False)] for n in rows}
    report = {
        "what": "seconds per two-point evaluation / step, and their ratio to two plain forwards on the same batch",
        "workload": args.workload,
        "command": "python benchmarks/paired_forward.py "
        + " ".join("DIR" if a == args.data_dir else a for a in (sys.argv[1:] if argv is None else argv)),
        "settings": {
            "batch_size": args.batch_size,
            "seq_len": args.seq_len if args.workload != "minilm-sst2" else "real",
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "dtype": "fp32",
            "directions": args.directions,
        },
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        "median_s": {n: statistics.median(v) for n, v in rows.items()},
        "ratio_to_two_forwards_median": {n: statistics.median(v) for n, v in ratios.items()},
        "seconds": rows,
    }
    out = Path(args.out or f"results/benchmarks/paired_forward_{args.workload}_b{args.batch_size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(out, json.dumps(report, indent=2) + "\n")
    print("| what | median s | / two forwards |\n|---|---|---|")
    for n in rows:
        print(f"| {n} | {report['median_s'][n]:.4f} | {report['ratio_to_two_forwards_median'][n]:.3f} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
