"""The rows of the OPT validation tables: registry methods (and FO-SGD) with their per-mode options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: fine-tuning modes: full fine-tuning and LoRA (r 8, alpha 16)
MODES = ("ft", "lora")


@dataclass(frozen=True)
class MethodEntry:
    """A row of the tables: a registry method (or ``fo-sgd``), an optional direction policy, and its
    options per mode. ``paper``: the JAGUAR row it is compared with (``None``: no published number).

    The options are the script's defaults, taken from the grids of ZO-Bench / MeZO / JAGUAR
    (``docs/theory.md`` §6.2) where they give one; they are starting points, not tuned
    values: the paper numbers come from grid searches (``--opt`` overrides them).
    """

    key: str
    label: str
    method: str
    opt_ft: dict[str, Any]
    opt_lora: dict[str, Any]
    policy: str | None = None
    policy_opt: dict[str, Any] = field(default_factory=dict)
    paper: str | None = None

    def options(self, mode: str) -> dict[str, Any]:
        return dict(self.opt_ft if mode == "ft" else self.opt_lora)


METHODS: dict[str, MethodEntry] = {
    e.key: e
    for e in (
        # ZO-Bench FO-SGD grid FT {1e-3..1e-7}, LoRA {1e-2..1e-6}
        MethodEntry("fo-sgd", "FO-SGD", "fo-sgd", {"lr": 1e-5}, {"lr": 1e-3}, paper="FO-SGD"),
        # MeZO: FT lr 1e-6/1e-7, eps 1e-3; LoRA lr 1e-4/5e-5, eps 1e-2
        MethodEntry("zo-sgd", "ZO-SGD", "zo-sgd", {"lr": 1e-6, "eps": 1e-3}, {"lr": 1e-4, "eps": 1e-2}, paper="ZO-SGD"),
        # ZO-Bench ZO-SGD-Sign (sign of the scalar times z): FT {1e-4,1e-6,1e-8} x eps {1e-3,1e-5}
        MethodEntry(
            "zo-sgd-sign",
            "ZO-SGD-Sign",
            "zo-sgd-sign",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-5, "eps": 1e-2},
            paper="ZO-SignSGD",
        ),
        # ZO-Bench ZO-Adam FT {1e-4..1e-8}, LoRA {1e-4,1e-5,1e-6}; AMSGrad variant = ZO-AdaMM
        MethodEntry(
            "zo-adamm", "ZO-AdaMM", "zo-adamm", {"lr": 1e-5, "eps": 1e-3}, {"lr": 1e-4, "eps": 1e-2}, paper="ZO-AdaMM"
        ),
        # JAGUAR: tau 1e-3, lr 1e-3 for JAGUAR SignSGD in LoRA (the paper's one stated value)
        MethodEntry(
            "jaguar-signsgd",
            "JAGUAR SignSGD",
            "jaguar-signsgd",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-3},
            paper="JAGUAR SignSGD",
        ),
        MethodEntry(
            "zo-muon", "ZO-Muon", "zo-muon", {"lr": 1e-5, "eps": 1e-3}, {"lr": 1e-3, "eps": 1e-2}, paper="ZO-Muon"
        ),
        MethodEntry(
            "jaguar-muon",
            "JAGUAR Muon",
            "jaguar-muon",
            {"lr": 1e-5, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-3},
            paper="JAGUAR Muon",
        ),
        # parameter-free: its own step sizes (lr is a multiplier, left at 1)
        MethodEntry("adanaged", "AdaNAGED", "adanaged", {}, {}),
        MethodEntry(
            "zo-sgd+ldsd",
            "ZO-SGD + LDSD",
            "zo-sgd",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-4, "eps": 1e-2},
            policy="ldsd",
        ),
        MethodEntry(
            "zo-sgd+gv",
            "ZO-SGD + GV",
            "zo-sgd",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-4, "eps": 1e-2},
            policy="gv",
        ),
        # the rest of the registry: measured by --measure-only (every method has a row), trained on request.
        # Step sizes: the ZO-SGD defaults for the SGD-type methods, 1 (a multiplier) for the parameter-free ones.
        MethodEntry(
            "zo-sgd-mmt",
            "ZO-SGD-MMT",
            "zo-sgd-mmt",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-4, "eps": 1e-2},
            paper="ZO-SGD-MMT",
        ),
        MethodEntry(
            "zo-signsgd",
            "ZO-SignSGD (coordinate-wise)",
            "zo-signsgd",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-5, "eps": 1e-2},
        ),
        MethodEntry("zo-adam", "ZO-Adam", "zo-adam", {"lr": 1e-5, "eps": 1e-3}, {"lr": 1e-4, "eps": 1e-2}),
        MethodEntry(
            "jaguar-signsgd-block",
            "JAGUAR SignSGD (block)",
            "jaguar-signsgd-block",
            {"lr": 1e-6, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-3},
        ),
        MethodEntry(
            "jaguar-muon-block",
            "JAGUAR Muon (block)",
            "jaguar-muon-block",
            {"lr": 1e-5, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-3},
        ),
        MethodEntry(
            "zo-muon-orthogonal",
            "ZO-Muon (semi-orthogonal)",
            "zo-muon-orthogonal",
            {"lr": 1e-5, "eps": 1e-3},
            {"lr": 1e-3, "eps": 1e-2},
        ),
        MethodEntry("zo-lmo", "ZO-LMO", "zo-lmo", {"lr": 1e-5, "eps": 1e-3}, {"lr": 1e-3, "eps": 1e-2}),
        MethodEntry("adanaged-alias", "AdaNAGED (ALIAS rule)", "adanaged-alias", {}, {}),
        MethodEntry("zo-dog", "ZO-DoG", "zo-dog", {}, {}),
        MethodEntry("zo-poem", "ZO-POEM", "zo-poem", {}, {}),
        MethodEntry("zo-alias-sign", "ZO-ALIAS-Sign", "zo-alias-sign", {}, {}),
    )
}

#: The rows of the JAGUAR tables (trained by default); ``--methods all`` (the default of ``--measure-only``)
#: adds every other registry method, so each registered method gets a memory/time row.
DEFAULT_METHODS: tuple[str, ...] = (
    "fo-sgd",
    "zo-sgd",
    "zo-sgd-sign",
    "zo-adamm",
    "jaguar-signsgd",
    "zo-muon",
    "jaguar-muon",
    "adanaged",
    "zo-sgd+ldsd",
    "zo-sgd+gv",
)


def parse_methods(text: str) -> list[MethodEntry]:
    """``"default"`` (:data:`DEFAULT_METHODS`), ``"all"`` (every :data:`METHODS` entry) or a comma list of
    :data:`METHODS` keys (``zo-sgd,jaguar-signsgd,zo-sgd+gv``)."""
    if text.strip().lower() == "default":
        return [METHODS[k] for k in DEFAULT_METHODS]
    if text.strip().lower() == "all":
        return list(METHODS.values())
    out: list[MethodEntry] = []
    for raw in text.split(","):
        key = raw.strip().lower()
        if not key:
            continue
        if key not in METHODS:
            raise ValueError(f"unknown method {raw.strip()!r}; known: {', '.join(METHODS)}")
        out.append(METHODS[key])
    if not out:
        raise ValueError(f"no methods in {text!r}")
    return out


def parse_modes(text: str) -> list[str]:
    """A comma list of :data:`MODES`; a clear error for anything else."""
    modes = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"modes must be a comma list of {MODES}, got {text!r}")
    return modes
