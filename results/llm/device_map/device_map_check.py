"""Model parallelism check: OPT split across two devices with accelerate's dispatch_model, one ZO step per method.

From the repository root (``docs/scale.md``, appendix; the logs next to this file came from an H100)::

    python results/llm/device_map/device_map_check.py opt-125m            # -> log_dispatch_model_cpu_offload.txt
    python results/llm/device_map/device_map_check.py opt-125m --manual   # -> log_manual_placement.txt
"""

import sys

import torch
from accelerate import dispatch_model

import zotheory.directions as zd
from llm import data as D
from llm import models
from llm.objective import CausalLMClassificationObjective, make_closure
from zotheory.optim.registry import make_optimizer

A = "cuda:0" if torch.cuda.is_available() else "cpu"
preset = sys.argv[1] if len(sys.argv) > 1 else "opt-125m"


def build():
    """The preset with random weights, first half of the layers on device A, the rest on the CPU."""
    m = models.build_opt_from_preset(preset, dtype="fp32", seed=0)
    n = m.config.num_hidden_layers
    dm = {
        "model.decoder.embed_tokens": A,
        "model.decoder.embed_positions": A,
        "model.decoder.final_layer_norm": "cpu",
        "lm_head": A,
    }
    dm.update({f"model.decoder.layers.{i}": (A if i < n // 2 else "cpu") for i in range(n)})
    if "--manual" not in sys.argv:
        return dispatch_model(m, device_map=dm)
    # real placement (no offload): move each module, and let a hook move its inputs to its device
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    for name, dev in dm.items():
        mod = m.get_submodule(name)
        mod.to(dev)
        add_hook_to_module(
            mod, AlignDevicesHook(execution_device=torch.device(dev), io_same_device=(name == "lm_head"))
        )
    return m


g = torch.Generator().manual_seed(0)
ids = torch.randint(4, 300, (4, 16), generator=g)
batch = D.CausalLMBatch(
    input_ids=ids,
    attention_mask=torch.ones_like(ids),
    position_ids=torch.arange(16).expand(4, 16).clone(),
    targets=torch.tensor([[100, 200]] * 4),
    target_mask=torch.ones(4, 2, dtype=torch.bool),
    labels=torch.tensor([0, 1, 0, 1]),
    num_options=2,
    layout="shared",
).to(A)


def trial(tag, name, **kw):
    """One step of optimizer ``name`` on the split model; prints the losses and whether both halves moved."""
    m = build()
    named = models.named_trainable_parameters(m)
    devs = sorted({str(p.device) for _, p in named})
    before = {
        n: p.detach().to("cpu", copy=True)
        for n, p in named
        if n.endswith("layers.0.fc1.weight") or n.endswith(f"layers.{m.config.num_hidden_layers - 1}.fc1.weight")
    }
    opt = make_optimizer(name, named, seed=0, **kw)
    clo = make_closure(CausalLMClassificationObjective(m), batch)
    try:
        l0 = float(clo())
        loss = opt.step(clo)
        l1 = float(clo())
        moved = {n.split(".")[-3]: bool((dict(named)[n].detach().cpu() != b).any()) for n, b in before.items()}
        print(
            f"{tag} {name}: OK devices={devs} loss {l0:.5f} -> step {float(loss):.5f} -> {l1:.5f}, changed {moved}",
            flush=True,
        )
    except Exception as e:
        print(f"{tag} {name}: FAILED devices={devs} {type(e).__name__}: {str(e)[:300]}", flush=True)


for name, kw in [
    ("zo-sgd", dict(lr=1e-3, eps=1e-3)),
    ("jaguar-signsgd", dict(lr=1e-3, eps=1e-3)),
    ("zo-adam", dict(lr=1e-3, eps=1e-3)),
]:
    trial("as-is", name, **kw)
orig = zd._axpy_


def axpy_same_device(p, z, alpha):
    """``p += alpha * z`` with the coefficient moved to the direction's device first."""
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(z.device)
    orig(p, z, alpha)


zd._axpy_ = axpy_same_device
for name, kw in [
    ("zo-sgd", dict(lr=1e-3, eps=1e-3)),
    ("jaguar-signsgd", dict(lr=1e-3, eps=1e-3)),
    ("zo-adam", dict(lr=1e-3, eps=1e-3)),
]:
    trial("alpha-to-z-device", name, **kw)
