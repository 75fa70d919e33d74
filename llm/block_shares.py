"""Where an LMO step puts its length: ``python -m llm.block_shares``.

AdaNAGED and ZO-LMO move block ``l`` by ``gamma rho_l lmo_1(m_l)``. For a generic ``m_l`` (full rank, no zero
entries) the squared Frobenius length of that move is ``gamma^2 rho_l^2 n_l / r_l^2``, with ``n_l`` entries and
``r_l`` = :func:`zotheory.lmo.rms_radius` of the block's base norm (sign: ``||sign||_F^2 = n``; spectral:
``||U V^T||_F^2 = min(rows, cols)``). So the share of block ``l`` in the squared step is

    ``share_l = (rho_l / r_l)^2 n_l / sum_k (rho_k / r_k)^2 n_k``,

which is the block's share of the parameters when ``rho_l = r_l`` (``radii="rms"``), as for ZO-SGD's isotropic
step, and skewed towards the sign blocks when ``rho_l = 1`` (``radii="unit"``): a sign block of ``n`` entries
counts ``n``, a ``384 x 384`` spectral block 384 (``docs/adanaged.md`` §3.1).

With ``--data-dir`` (SST-2's ``train.tsv``) it also writes ``gradient``: each class's share of the squared
first-order gradient at the pretrained weights, the mean over ``--batches`` batches of 16 from the protocol's 1000
training sentences (``llm.minilm_sst2``), in FT. That is where a step would have to go.

The command builds the optimizer's own block norms (:func:`zotheory.optim.adanaged.block_norms` over the default
routing) for all-MiniLM-L6-v2 with the prototype head (``llm.prototype_head``, FT and LoRA) and writes, per routing
class (norm and whether the name is an embedding), the parameter share and the step share under both radii::

    python -m llm.block_shares --data-dir $D --out results/minilm_sst2_realweights/block_shares.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from llm.data.readers import load_examples
from llm.data.sampling import sample_splits
from llm.prototype_head import load_minilm_prototype_classifier, prepare_prototype_model
from zotheory import atomicio
from zotheory.lmo import get_norm, rms_radius, unscaled
from zotheory.optim.adanaged import RADII, block_norms, default_norm_name
from zotheory.optim.muon import EMBEDDING_NAME_PARTS

__all__ = ["gradient_shares", "routing_class", "step_shares", "main"]


def step_shares(named: Iterable[tuple[str, Tensor]], radii: str) -> dict[str, dict[str, float]]:
    """Per routing class ``"<norm>/<embedding|other>"``: ``tensors``, ``params`` (share of the entries) and
    ``step`` (share of the squared length of a generic step, formula in the module docstring) under ``radii``."""
    items = list(named)
    if not items:
        raise ValueError("step_shares needs at least one (name, tensor) pair")
    params = [p for _, p in items]
    base = [get_norm(default_norm_name(p, n)) for n, p in items]
    norms = block_norms(base, params, radii)
    out: dict[str, dict[str, float]] = {}
    weights = []
    for (name, p), b, norm in zip(items, base, norms, strict=True):
        rho = unscaled(norm)[1]
        w = (rho / rms_radius(b, tuple(p.shape))) ** 2 * p.numel()
        weights.append(w)
        row = out.setdefault(routing_class(name, p), {"tensors": 0, "params": 0.0, "step": 0.0})
        row["tensors"] += 1
        row["params"] += p.numel()
        row["step"] += w
    n_total, w_total = sum(p.numel() for p in params), sum(weights)
    for row in out.values():
        row["params"] /= n_total
        row["step"] /= w_total
    return dict(sorted(out.items()))


def routing_class(name: str, p: Tensor) -> str:
    """``"<default norm>/<embedding|other>"`` of a named tensor (the rows of :func:`step_shares`)."""
    kind = "embedding" if any(part in name.lower() for part in EMBEDDING_NAME_PARTS) else "other"
    return f"{default_norm_name(p, name)}/{kind}"


def gradient_shares(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], labels: Sequence[int], batch_size: int = 16
) -> dict[str, float]:
    """Per routing class, the share of the squared first-order gradient of the cross-entropy of ``model``'s logits,
    averaged over the consecutive batches of ``batch_size`` of ``texts`` (a last short batch is dropped). The
    gradients are cleared afterwards."""
    if len(texts) != len(labels):
        raise ValueError(f"need one label per text, got {len(texts)} texts and {len(labels)} labels")
    batches = len(texts) // batch_size if batch_size >= 1 else 0
    if batches < 1:
        raise ValueError(f"need at least one batch of batch_size={batch_size!r} from {len(texts)} texts")
    named = [(n, t) for n, t in model.named_parameters() if t.requires_grad]
    totals: dict[str, float] = {}
    try:
        for b in range(batches):
            rows = slice(batch_size * b, batch_size * (b + 1))
            enc = tokenizer(list(texts[rows]), padding=True, truncation=True, max_length=64, return_tensors="pt")
            model.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(**enc).logits, torch.tensor(list(labels[rows])))
            loss.backward()
            sq: dict[str, float] = {}
            for name, t in named:
                if t.grad is not None:
                    cls = routing_class(name, t)
                    sq[cls] = sq.get(cls, 0.0) + float(t.grad.double().pow(2).sum())
            for cls, v in sq.items():
                totals[cls] = totals.get(cls, 0.0) + v / sum(sq.values()) / batches
    finally:
        model.zero_grad(set_to_none=True)
    return dict(sorted(totals.items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Write the MiniLM FT and LoRA shares under both radii to ``--out`` and print them as a table."""
    p = argparse.ArgumentParser(prog="python -m llm.block_shares", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--data-dir", help="folder with SST-2's train.tsv: adds the FT gradient shares")
    p.add_argument("--batches", type=int, default=8, help="batches of 16 for the gradient shares")
    args = p.parse_args(argv)
    data = f" --data-dir $D --batches {args.batches}" if args.data_dir else ""
    doc: dict[str, Any] = {
        "model": "all-MiniLM-L6-v2 + prototype head",
        "command": f"python -m llm.block_shares{data} --out {args.out}",
    }
    for mode in ("ft", "lora"):
        model, tokenizer = load_minilm_prototype_classifier(["It was terrible.", "It was great."])
        model = prepare_prototype_model(model, mode)
        named = [(n, t) for n, t in model.named_parameters() if t.requires_grad]
        doc[mode] = {radii: step_shares(named, radii) for radii in RADII}
        if args.data_dir and mode == "ft":
            train = sample_splits(load_examples("sst2", "train", Path(args.data_dir) / "train.tsv"), 1000, 500, None)
            chunk = train.train[: 16 * args.batches]
            texts, labels = [ex.texts[0] for ex in chunk], [ex.label for ex in chunk]
            doc[mode]["gradient"] = gradient_shares(model, tokenizer, texts, labels)
    atomicio.write_text(Path(args.out), json.dumps(doc, indent=1) + "\n")
    for mode in ("ft", "lora"):
        grad = doc[mode].get("gradient", {})
        print(f"{mode}: {'class':28s} {'params':>8s} {'step unit':>10s} {'step rms':>9s} {'gradient':>9s}")
        for cls, row in doc[mode]["unit"].items():
            g = f"{grad[cls]:9.4f}" if cls in grad else f"{'-':>9s}"
            print(f"    {cls:28s} {row['params']:8.4f} {row['step']:10.4f} {doc[mode]['rms'][cls]['step']:9.4f} {g}")
    return doc


if __name__ == "__main__":
    main()
