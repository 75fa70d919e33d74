"""Determinism of the validation suite at the quick size: the same seed gives the same ``results.json``,
whether the claims run in this process or in 2 spawned workers.

CI runs a representative subset: the cheapest claim (or two) of every claim module in
``validation/claims/`` (a new module must add one here, the first test checks it). The whole quick
suite, run twice and compared, is the longer check ``scripts/check_determinism.sh`` (README,
development section).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from validation import load_claims
from validation.__main__ import main

#: The cheapest claims of each claim module at the quick size (seconds on one core, measured with
#: ``python -m validation --claims ... --workers 1``; timing.json): module -> claims.
SUBSET = {
    # the robustness protocol (wrote its wall time into results.json before) and the warm-up claim
    "validation.claims.adanaged": ["adanaged_robust_noisy_oracle", "adanaged_warmup_dimension"],  # 4.8 s, 2.6 s
    "validation.claims.estimators": ["smoothing_bias_lipschitz", "coordinate_finite_differences"],  # 0.3 s, 0.9 s
    "validation.claims.geometry": ["geometry_sign_vs_l2"],  # 13 s, the cheaper of the two
    "validation.claims.jaguar": ["jaguar_memory_static"],  # 6 s, the cheapest of three
    "validation.claims.lmo": ["product_norm_duality", "lmo_identities"],  # 0.3 s, 0.7 s
    "validation.claims.policies": ["ldsd_policy_gradient_unbiased"],  # 2.1 s
    "validation.claims.rates": ["zo_frank_wolfe_rate"],  # 1.6 s
}
SEED = 0  # the suite's default


def test_the_subset_covers_every_claim_module() -> None:
    registry = load_claims()
    modules = {c.run.__module__ for c in registry.values()}
    assert modules == set(SUBSET), f"claim modules without a claim in SUBSET: {sorted(modules - set(SUBSET))}"
    for module, names in SUBSET.items():
        for name in names:
            assert registry[name].run.__module__ == module, f"{name} is not in {module}"


def _timing_free(results: dict) -> dict:
    """``results`` without any wall-time field (there should be none: wall times go to timing.json)."""
    if isinstance(results, dict):
        return {
            k: _timing_free(v) for k, v in results.items() if not any(w in k for w in ("seconds", "wall", "time_s"))
        }
    if isinstance(results, list):
        return [_timing_free(v) for v in results]
    return results


@pytest.mark.slow
def test_same_seed_same_results_across_every_claim_module(tmp_path: Path) -> None:
    names = [n for claims in SUBSET.values() for n in claims]
    runs = {workers: tmp_path / f"workers{workers}" for workers in ("1", "2")}
    status = {}
    for workers, out in runs.items():
        status[workers] = main(
            ["--claims", *names, "--workers", workers, "--seed", str(SEED), "--out", str(out), "--no-progress"]
        )
    assert status["1"] == status["2"] and status["1"] in (0, 1)  # 1: a verdict differs from its expectation
    texts = {w: (out / "results.json").read_text() for w, out in runs.items()}
    assert texts["1"] == texts["2"], "results.json differs between 1 and 2 workers with the same seed"
    results = json.loads(texts["1"])
    assert set(results["claims"]) == set(names)
    assert _timing_free(results) == results, "results.json carries a timing field; wall times belong in timing.json"
