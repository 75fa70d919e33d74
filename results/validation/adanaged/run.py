"""Longer-budget AdaNAGED robustness runs behind ``docs/adanaged.md`` sections 6.1 and 6.2.

From the repository root (one torch thread; each protocol run takes 6-11 minutes on this 2-core machine):

    .venv/bin/python results/validation/adanaged/run.py protocol l2_quadratic linf_separable spectral_matrix nonconvex
    .venv/bin/python results/validation/adanaged/run.py linf-1e5

``protocol KEY...`` runs :func:`validation.claims.adanaged.protocol` (3 seeds, 6 x 3 baseline grids, four initial
guesses, d = 100, 2000 steps = 4000 evaluations) and writes ``protocol_d100_KEY.json`` (the claim's JSON record).
``linf-1e5`` runs the separable log-cosh problem at d = 10^5 for 3000 steps on seed 0: AdaNAGED at three initial
guesses and ZO-LMO over its learning-rate grid at ``eps = 1e-3`` (not the full protocol, which takes hours here),
and writes ``linf_1e5_partial.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from problems import SeparableLInf
from validation.claims import adanaged as claims

HERE = Path(__file__).resolve().parent
REPS = (1e-9, 1e-7, 1e-5, 1e-3)


def run_protocol(keys: list[str]) -> None:
    """The claims' protocol at 2000 steps for each problem key; writes ``protocol_d100_KEY.json`` here."""
    for key in keys:
        start = time.perf_counter()
        result = claims.protocol(key, steps=2000, reps=REPS)
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
        "adanaged": {f"{r:g}": claims._run_adanaged(setting, r, seed) for r in setting.reps},
        "zo_lmo": {
            f"{lr:.3g}": claims._run_baseline(setting, "ZO-LMO", float(lr), 1e-3, seed)
            for lr in claims._lr_grid(probe, "ZO-LMO", setting.norm, setting.steps)
        },
    }
    (HERE / "linf_1e5_partial.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:2] == ["protocol"]:
        run_protocol(sys.argv[2:])
    elif sys.argv[1:2] == ["linf-1e5"]:
        run_linf_1e5()
    else:
        raise SystemExit(__doc__)
