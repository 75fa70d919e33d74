"""Estimator overhead: time of one zeroth-order estimate over the time of its closure evaluations.

For every direction family, at d = 10^6 (one 1000 x 1000 float32 tensor) and q in {1, 4}:

* ``ratio`` = time of ``estimate_gradient`` (perturb, evaluate, restore: three regenerations of each
  direction) / time of the ``2q`` closure evaluations alone. Target <= 1.2. (Optimizers fold the last
  restore into the update, so a step costs one regeneration pass less than estimate + apply.)
* two closures: the quadratic ``f = 1/2 sum a_i x_i^2`` (trivially cheap: a few ms, so the cost of
  regenerating directions dominates) and a model-like closure, the MSE of a 1000 -> 1000 linear layer
  with ReLU on a batch of 512 inputs (~1e6 parameters, ~1e9 flop per evaluation).
* application: ``est.apply_(params, alpha)`` (in place, directions regenerated, the pending restore
  folded in) against materialising ``g`` (``est.materialize``) and adding it, with the extra bytes each
  needs (apply: one tensor-sized scratch per direction; materialise: ``g`` plus a scratch).

Times are medians of ``--repeats`` runs after one warm-up (the closure is re-timed next to every
estimate, so that a transient slowdown does not skew the ratios), on whatever CPU threads torch uses
(``torch.get_num_threads()`` is recorded with the load average, since a loaded machine slows the
memory-bound RNG more than the matmuls). Writes ``results/benchmarks/estimator_overhead.json``.

Run: ``python benchmarks/estimator_overhead.py`` (about 2-4 minutes on 2 cores).
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

import torch

from zotheory.directions import (
    Block,
    Coordinate,
    DirectionFamily,
    Gaussian,
    LowRank,
    Orthonormal,
    Rademacher,
    Sphere,
)
from zotheory.estimators import estimate_gradient
from zotheory.optim.jaguar import JaguarBlock
from zotheory.optim.muon import SemiOrthogonal

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def families(q: int) -> list[DirectionFamily]:
    """Every direction family timed, the orthonormal frame at ``q`` directions."""
    return [
        Gaussian(),
        Rademacher(),
        Sphere(),
        Coordinate(),
        Block(0.1),
        JaguarBlock(0.1),
        LowRank(4),
        SemiOrthogonal("identity"),
        Orthonormal(q),
    ]


def closures(x: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """Two losses of ``x``: a diagonal quadratic (cheap) and a one-layer MLP forward (matmul-bound)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(x.shape, generator=gen) + 0.5
    inputs = torch.randn(512, x.shape[1], generator=gen)
    targets = torch.randn(512, x.shape[0], generator=gen)

    def quadratic() -> torch.Tensor:
        return 0.5 * (a * x * x).sum()

    def mlp() -> torch.Tensor:
        return ((torch.relu(inputs @ x.T) - targets) ** 2).mean()

    return {"quadratic": quadratic, "mlp_forward": mlp}


def application(
    params: list[torch.Tensor], closure: Callable[[], torch.Tensor], family: DirectionFamily, q: int, repeats: int
) -> dict[str, float]:
    """In-place ``apply_`` against materialise-and-add, for a nonzero step (a zero one is skipped)."""
    est = estimate_gradient(params, closure, family, step_seed=99, q=q, radius=1e-3)
    t_apply = median_time(lambda: est.apply_(params, 1e-12), repeats)

    def materialise_and_add() -> None:
        g = est.materialize(params)
        for p, gi in zip(params, g, strict=False):
            p.add_(gi, alpha=1e-12)

    t_mat = median_time(materialise_and_add, repeats)
    nbytes = sum(p.numel() * p.element_size() for p in params)
    return {
        "apply_s": t_apply,
        "materialize_add_s": t_mat,
        "apply_extra_bytes": nbytes,  # one tensor-sized scratch (a single tensor here)
        "materialize_extra_bytes": 2 * nbytes,  # g plus a direction scratch
    }


def run(side: int, repeats: int) -> dict[str, object]:
    """Time an estimate against its ``2 q`` closure calls for every closure, q and family; the JSON document."""
    x = torch.randn(side, side, generator=torch.Generator().manual_seed(1)) * 0.05
    params = [x]
    rows = []
    with torch.no_grad():
        for cname, closure in closures(x).items():
            for q in (1, 4):
                for family in families(q):
                    t_eval = median_time(closure, repeats)  # re-timed next to each estimate
                    seed = [0]

                    def estimate(
                        closure: Callable[[], torch.Tensor] = closure,
                        family: DirectionFamily = family,
                        q: int = q,
                        seed: list[int] = seed,
                    ) -> object:
                        seed[0] += 1
                        return estimate_gradient(params, closure, family, step_seed=seed[0], q=q, radius=1e-3)

                    t_est = median_time(estimate, repeats)
                    row = {
                        "closure": cname,
                        "family": repr(family),
                        "q": q,
                        "d": x.numel(),
                        "closure_s": t_eval,
                        "estimate_s": t_est,
                        "ratio": t_est / (2 * q * t_eval),
                        "meets_1.2": t_est / (2 * q * t_eval) <= 1.2,
                    }
                    if cname == "quadratic":
                        row.update(application(params, closure, family, q, repeats))
                    rows.append(row)
                    print(
                        f"{cname:12s} {row['family']:42s} q={q}  eval {t_eval * 1e3:8.2f} ms  "
                        f"estimate {t_est * 1e3:9.2f} ms  ratio {row['ratio']:6.2f}"
                        + (
                            f"  apply {row['apply_s'] * 1e3:8.2f} ms  "
                            f"materialise+add {row['materialize_add_s'] * 1e3:8.2f} ms"
                            if "apply_s" in row
                            else ""
                        ),
                        flush=True,
                    )
    return {
        "benchmark": "estimator_overhead",
        "command": " ".join(["python benchmarks/estimator_overhead.py", *sys.argv[1:]]),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "cpu_model": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            platform.processor(),
        ),
        "load_average_at_end": os.getloadavg(),
        "platform": platform.platform(),
        "rows": rows,
    }


def main() -> None:
    """Command line: run the benchmark (or only the apply comparison) and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1000, help="the tensor is side x side (d = side^2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "estimator_overhead.json")
    parser.add_argument(
        "--apply-only", action="store_true", help="rerun only the apply/materialise comparison and update --out"
    )
    args = parser.parse_args()
    if args.apply_only:
        result = json.loads(args.out.read_text())
        x = torch.randn(args.side, args.side, generator=torch.Generator().manual_seed(1)) * 0.05
        closure = closures(x)["quadratic"]
        with torch.no_grad():
            for row in result["rows"]:
                if row["closure"] != "quadratic":
                    continue
                family = next(f for f in families(row["q"]) if repr(f) == row["family"])
                row.update(application([x], closure, family, row["q"], args.repeats))
                print(
                    f"{row['family']:42s} q={row['q']}  apply {row['apply_s'] * 1e3:8.2f} ms  "
                    f"materialise+add {row['materialize_add_s'] * 1e3:8.2f} ms",
                    flush=True,
                )
        result["apply_command"] = " ".join(["python benchmarks/estimator_overhead.py", *sys.argv[1:]])
    else:
        result = run(args.side, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
