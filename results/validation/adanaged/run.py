"""Longer-budget AdaNAGED robustness runs behind ``docs/adanaged.md`` sections 6.1 and 6.2.

From the repository root (one torch thread; each protocol run takes 6-11 minutes on this 2-core machine):

    .venv/bin/python results/validation/adanaged/run.py protocol l2_quadratic linf_separable spectral_matrix nonconvex
    .venv/bin/python results/validation/adanaged/run.py linf-1e5
    .venv/bin/python results/validation/adanaged/run.py rules [RULE ...]
    .venv/bin/python results/validation/adanaged/run.py table

``protocol KEY...`` runs :func:`validation.claims.adanaged.protocol` (3 seeds, 6 x 3 baseline grids, four initial
guesses, d = 100, 2000 steps = 4000 evaluations) and writes ``protocol_d100_KEY.json`` (the claim's JSON record).
``protocol`` and ``linf-1e5`` run AdaNAGED with the step rule ``dog`` (:data:`RECORDED_RULE`), the default when
their files were written (``docs/adanaged.md`` §6.1b, §6.2), so that the commands reproduce them; the present
default's robustness at these sizes is the validation claims' (``results/validation/report/``).
``linf-1e5`` runs the separable log-cosh problem at d = 10^5 for 3000 steps on seed 0: AdaNAGED at three initial
guesses and ZO-LMO over its learning-rate grid at ``eps = 1e-3`` (not the full protocol, which takes hours here),
and writes ``linf_1e5_partial.json``.
``rules`` runs AdaNAGED with the step rules of ``RULES`` (``search`` and its variants) on the six
robustness settings at full size (the claims' seeds and ``reps_rel`` values) and on the sigma = 1 stress point at
master seeds 0, 1 and 5 (``docs/adanaged.md`` §6.1), and writes ``step_rules.json``: per setting and rule, the
median of ``f(x_T) - f*`` over seeds for each ``reps_rel``, the runs ending at or above ``f_0``, and the probe
tallies (how many probes had a curvature below the loss's resolution). The baselines do not depend on the rule and
are not rerun. ``rules RULE ...`` runs only the named rules and merges them into the existing file.
``table`` prints, from ``step_rules.json`` and the validation report (``results/validation/report/results.json``),
each rule's worst ratio to the claim's best tuned baseline per robustness setting, and the stress runs ending at or
above ``f_0``, as the markdown table of ``docs/adanaged.md`` §6.7.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from problems import Quadratic, SeparableLInf
from problems.base import AdditiveNoise, StochasticProblem
from validation.claims import adanaged as claims
from zotheory import atomicio
from zotheory.optim import AdaNAGED
from zotheory.optim.adanaged import STEP_RULES

HERE = Path(__file__).resolve().parent
REPS = (1e-9, 1e-7, 1e-5, 1e-3)
#: AdaNAGED's step rule in ``protocol_d100_*.json`` and ``linf_1e5_partial.json`` (module docstring).
RECORDED_RULE = "dog"


def run_protocol(keys: list[str]) -> None:
    """The claims' protocol at 2000 steps for each problem key; writes ``protocol_d100_KEY.json`` here."""
    for key in keys:
        start = time.perf_counter()
        result = claims.protocol(key, steps=2000, reps=REPS, step_rule=RECORDED_RULE)
        (HERE / f"protocol_d100_{key}.json").write_text(json.dumps(result.to_json(), indent=1))
        print(key, result.passed, result.measured, f"{time.perf_counter() - start:.0f} s", flush=True)


def run_linf_1e5() -> None:
    """AdaNAGED and tuned ZO-LMO on the d = 10^5 separable problem; writes ``linf_1e5_partial.json`` here."""
    setting = claims.Setting(
        "l-inf separable log-cosh (d=100000, heavy-tailed curvature)",
        lambda s: SeparableLInf(100_000, regime="sign", phi="logcosh", seed=s, dtype=torch.float64),
        "linf",
        3000,
        (1e-9, 1e-6, 1e-3),
    )
    seed = int(claims.mix_seed(0, claims._SALT, 0) % (2**31))
    probe = setting.make(seed)
    out = {
        "setting": setting.label,
        "steps": setting.steps,
        "seed": seed,
        "f0": probe.suboptimality(),
        "adanaged": {f"{r:g}": claims._run_adanaged(setting, r, seed, step_rule=RECORDED_RULE) for r in setting.reps},
        "zo_lmo": {
            f"{lr:.3g}": claims._run_baseline(setting, "ZO-LMO", float(lr), 1e-3, seed)
            for lr in claims._lr_grid(probe, "ZO-LMO", setting.norm, setting.steps)
        },
    }
    (HERE / "linf_1e5_partial.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def _rule_runs(setting: claims.Setting, seeds: list[int], rule: str) -> dict[str, Any]:
    """AdaNAGED with step rule ``rule`` on every ``reps_rel`` of ``setting`` and every seed."""
    finals: dict[str, list[float]] = {}
    tally = {"probes": 0, "unresolved": 0}
    f0s = [setting.make(s).suboptimality() for s in seeds]
    for reps in setting.reps:
        finals[f"{reps:g}"] = []
        for seed in seeds:
            problem = setting.make(seed)
            opt = AdaNAGED(claims._groups(problem, setting.norm), reps_rel=reps, seed=seed, step_rule=rule)
            finals[f"{reps:g}"].append(claims._final(problem, opt, setting.steps, seed))
            t = opt.state["adanaged"]["tally"]
            tally["probes"] += t["probes"]
            tally["unresolved"] += t["unresolved"]
    return {
        "median": {r: float(np.median(v)) for r, v in finals.items()},
        "at_or_above_f0": sum(1 for v in finals.values() for x, f0 in zip(v, f0s, strict=True) if not x < f0),
        "probes": tally["probes"],
        "unresolved_probes": tally["unresolved"],
    }


#: Every variant of the function-value search in the optimizer's registry, ``search`` first.
RULES = [name for name in STEP_RULES if name.startswith("search")]


def run_rules(only: list[str]) -> None:
    """The search rule's variants (``only``, or all of :data:`RULES`) on the robustness settings and the
    sigma = 1 stress point; rules not rerun keep their numbers from the existing ``step_rules.json``."""
    unknown = [r for r in only if r not in RULES]
    if unknown:
        raise SystemExit(f"unknown step rule(s) {unknown}; valid: {RULES}")
    path = HERE / "step_rules.json"
    old = json.loads(path.read_text()) if only and path.is_file() else {"settings": {}}
    settings = claims._settings(claims.Context("full", 0))
    noisy = settings["noisy_quadratic"]
    stress = claims.Setting(
        "l2 quadratic + additive-noise oracle (d=100, sigma=1), the stress point",
        lambda s: AdditiveNoise(Quadratic(100, L=1.0, mu=1e-3, rotated=True, seed=s, dtype=torch.float64), 1.0),
        noisy.norm,
        noisy.steps,
        noisy.reps,
    )
    cases = [(key, st, 0) for key, st in settings.items()] + [(f"sigma1_master{m}", stress, m) for m in (0, 1, 5)]
    out: dict[str, Any] = {"rules": RULES, "settings": {}}
    for key, setting, master in cases:
        stochastic = isinstance(setting.make(0), StochasticProblem)
        n_seeds = claims.STOCHASTIC_SEEDS if stochastic else 3
        seeds = [int(claims.mix_seed(master, claims._SALT, k) % (2**31)) for k in range(n_seeds)]
        row = {"label": setting.label, "seeds": seeds, "steps": setting.steps}
        for rule in RULES:
            if only and rule not in only:
                row[rule] = old["settings"].get(key, {}).get(rule)
            else:
                row[rule] = _rule_runs(setting, seeds, rule)
        out["settings"][key] = row
        print(key, json.dumps({r: row[r] for r in only or RULES}), flush=True)
    atomicio.write_text(path, json.dumps(out, indent=1))


#: The validation claim behind each robustness setting of ``step_rules.json``.
CLAIMS = {
    "l2_quadratic": "adanaged_robust_l2_quadratic",
    "linf_separable": "adanaged_robust_linf",
    "spectral_matrix": "adanaged_robust_spectral",
    "nonconvex": "adanaged_robust_nonconvex",
    "logistic": "adanaged_robust_stochastic_logistic",
    "noisy_quadratic": "adanaged_robust_noisy_oracle",
}


def _best_tuned(claim: dict[str, Any]) -> float:
    """The claim's reference: the best tuned baseline's median ``f(x_T) - f*`` (its plot's "best tuned" line)."""
    lines = [h["y"] for plot in claim["plots"] for h in plot.get("hlines", []) if h["label"].startswith("best tuned")]
    if len(lines) != 1:
        raise SystemExit(f"claim {claim['name']!r}: expected one 'best tuned' line, found {len(lines)}")
    return float(lines[0])


def print_table() -> None:
    """The markdown table of each rule's worst ratio to the tuned baseline, from the committed files."""
    rules_file = json.loads((HERE / "step_rules.json").read_text())
    report = json.loads((HERE.parent / "report" / "results.json").read_text())["claims"]
    rules = [r for r in rules_file["rules"] if all(row.get(r) for row in rules_file["settings"].values())]
    print("| setting | " + " | ".join(f"`{r}`" for r in rules) + " |")
    print("|---|" + "---|" * len(rules))
    for key, claim in CLAIMS.items():
        row, best = rules_file["settings"][key], _best_tuned(report[claim])
        print(f"| {key} | " + " | ".join(f"{max(row[r]['median'].values()) / best:.2f}" for r in rules) + " |")
    stress = [k for k in rules_file["settings"] if k.startswith("sigma1_")]
    cells = [str(sum(rules_file["settings"][k][r]["at_or_above_f0"] for k in stress)) for r in rules]
    print("| sigma = 1 stress, runs at or above f_0 (3 master seeds) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:2] == ["protocol"]:
        run_protocol(sys.argv[2:])
    elif sys.argv[1:2] == ["linf-1e5"]:
        run_linf_1e5()
    elif sys.argv[1:2] == ["rules"]:
        run_rules(sys.argv[2:])
    elif sys.argv[1:2] == ["table"]:
        print_table()
    else:
        raise SystemExit(__doc__)
