"""llm.ZOTrainer: the Hugging Face Trainer with a zotheory method (tiny random OPT, offline, CPU, seconds).

Every run here is deterministic (fixed seeds, private direction generators), so equalities are exact
statements about seeded runs: a resumed run must take the same directions as an uninterrupted one, two
ranks must hold bit-identical weights, micro-batches must act as one batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from ranks import run_ranks  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

from llm.hf_trainer import DeferredStepOptimizer, ZOTrainer  # noqa: E402
from llm.models import apply_lora, build_opt_from_preset  # noqa: E402
from zotheory.optim import ZOSGD  # noqa: E402

SEQ = 12


def _dataset(n: int = 32, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random token sequences with the causal-LM loss (labels = inputs)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(4, 300, (SEQ,), generator=gen)
        rows.append({"input_ids": ids, "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": ids.clone()})
    return rows


def _args(out: Path, **kw) -> TrainingArguments:
    base = dict(
        output_dir=str(out),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=6,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        learning_rate=1e-3,
        save_strategy="no",
        dataloader_num_workers=0,
    )
    base.update(kw)
    return TrainingArguments(**base)


def _float64_lm_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Next-token cross-entropy in the logits' dtype."""
    logits = outputs.logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "method,options,policy",
    [
        ("jaguar-signsgd", {"eps": 1e-3, "beta": 0.5}, None),  # momentum state + a linear lr schedule
        ("zo-sgd", {"eps": 1e-3}, "ldsd"),  # a learned direction policy's state
    ],
)
def test_resumed_run_takes_the_same_directions(tmp_path: Path, method: str, options: dict, policy: str | None) -> None:
    kw = dict(save_strategy="steps", save_steps=3, lr_scheduler_type="linear", warmup_steps=1)
    full_model = build_opt_from_preset("tiny", seed=0)
    full = ZOTrainer(
        model=full_model,
        args=_args(tmp_path / "full", **kw),
        train_dataset=_dataset(),
        zo_method=method,
        zo_options=options,
        zo_policy=policy,
    )
    full.train()
    resumed_model = build_opt_from_preset("tiny", seed=0)
    resumed = ZOTrainer(
        model=resumed_model,
        args=_args(tmp_path / "resumed", **kw),
        train_dataset=_dataset(),
        zo_method=method,
        zo_options=options,
        zo_policy=policy,
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    a, b, start = _weights(full_model), _weights(resumed_model), _weights(build_opt_from_preset("tiny", seed=0))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], start[n]) for n in a)  # it trained
    assert resumed.zo_optimizer.state["zo"] == full.zo_optimizer.state["zo"]
    assert resumed.zo_optimizer.state["zo"]["step"] == 6
    # forward passes restored with the checkpoint: evals_per_step per step, over 2 micro-batches each
    evals = 6 * full.zo_optimizer.evals_per_step
    assert (
        vars(resumed.zo_forward_count)
        == vars(full.zo_forward_count)
        == {"forward_passes": evals, "forward_calls": 2 * evals, "backward_calls": 0}
    )
    # the HF scheduler drove the ZO group's lr (linear decay to 0 at step 6)
    assert full.zo_optimizer.param_groups[0]["lr"] == full.lr_scheduler.get_last_lr()[0] == 0.0
    lrs = [r["learning_rate"] for r in full.state.log_history if "loss" in r]
    assert (
        lrs[0] == 0.0 and lrs[1] == pytest.approx(1e-3) and all(x > y for x, y in zip(lrs[1:], lrs[2:], strict=False))
    )
    logged = [r for r in full.state.log_history if "loss" in r]
    assert "grad_norm" not in logged[0] and logged[-1]["zo_forward_passes"] == evals


def test_micro_batches_act_as_one_batch(tmp_path: Path) -> None:
    """4 x 2 accumulated micro-batches take the step of one batch of 8 (same order, same directions),
    with twice the forward calls; nothing ever holds a gradient. In float64 with a float64 loss (the
    Trainer's compute_loss_func; transformers' own causal-LM loss upcasts to float32 only), so that the only
    difference, the rounding of the mean loss divided by the radius in the finite difference, stays near 1e-13."""
    models = []
    for name, bs, ga in (("accumulated", 4, 2), ("big", 8, 1)):
        model = build_opt_from_preset("tiny", seed=0).double()
        trainer = ZOTrainer(
            model=model,
            args=_args(
                tmp_path / name,
                per_device_train_batch_size=bs,
                gradient_accumulation_steps=ga,
                max_steps=3,
                learning_rate=1e-2,
            ),
            train_dataset=_dataset(),
            zo_method="zo-sgd",
            zo_options={"eps": 1e-3},
            compute_loss_func=_float64_lm_loss,
        )
        trainer.train()
        assert trainer.zo_forward_count.forward_calls == 3 * 2 * ga
        assert all(p.grad is None for p in model.parameters())
        models.append(_weights(model))
    start = _weights(build_opt_from_preset("tiny", seed=0).double())
    acc, big = models
    for n in acc:
        torch.testing.assert_close(acc[n], big[n], rtol=1e-9, atol=1e-11)
    moved = max(float((acc[n] - start[n]).abs().max()) for n in acc)
    assert moved > 1e-4


def test_lora_model_trains_its_adapters_only(tmp_path: Path) -> None:
    model = apply_lora(build_opt_from_preset("tiny", seed=0), r=4, alpha=8, seed=0)
    before = _weights(model)
    trainer = ZOTrainer(
        model=model,
        args=_args(tmp_path, max_steps=3, learning_rate=1e-2, save_strategy="steps", save_steps=3),
        train_dataset=_dataset(),
        eval_dataset=_dataset(8, seed=1),
        zo_method="zo-sgd",
        zo_options={"eps": 1e-3},
    )
    trainer.train()
    after = _weights(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all("lora_B" in n or "lora_A" in n for n in changed)
    lora = {id(p) for n, p in model.named_parameters() if "lora_" in n}
    assert lora and {id(p) for p in trainer.zo_optimizer.zo_params()} == lora
    assert "eval_loss" in trainer.evaluate()
    assert (tmp_path / "checkpoint-3" / "adapter_model.safetensors").exists()


def test_hf_optimizer_step_and_scheduler_act_on_the_zo_groups() -> None:
    w = torch.nn.Parameter(torch.ones(3))
    zo = ZOSGD([w], lr=0.5, eps=1e-3, seed=0)
    shim = DeferredStepOptimizer(zo)
    shim.zero_grad()
    assert shim.step() is None and torch.equal(w.detach(), torch.ones(3)) and zo.state["zo"]["step"] == 0
    sched = torch.optim.lr_scheduler.LambdaLR(shim, lambda k: 0.1 * (k + 1))
    assert zo.param_groups[0]["lr"] == pytest.approx(0.05)
    shim.step()
    sched.step()
    assert zo.param_groups[0]["lr"] == pytest.approx(0.1)
    shim.step(lambda: (w * w).sum())  # a closure runs the ZO step
    assert zo.state["zo"]["step"] == 1 and not torch.equal(w.detach(), torch.ones(3))
    sd = shim.state_dict()
    assert sd["zo_trainer_forward_count"] == {"forward_passes": 0, "forward_calls": 0, "backward_calls": 0}
    other = DeferredStepOptimizer(ZOSGD([torch.nn.Parameter(torch.ones(3))], lr=0.5, eps=1e-3, seed=0))
    other.load_state_dict(sd)
    assert other.zo.state["zo"] == zo.state["zo"] and other.param_groups[0]["lr"] == pytest.approx(0.1)


def test_bad_settings_name_the_bad_value(tmp_path: Path) -> None:
    model = build_opt_from_preset("tiny", seed=0)
    args = _args(tmp_path)
    with pytest.raises(ValueError, match="'zo-sgdd'"):
        ZOTrainer(model=model, args=args, train_dataset=_dataset(), zo_method="zo-sgdd")
    with pytest.raises(ValueError, match="'epz'"):
        ZOTrainer(model=model, args=args, train_dataset=_dataset(), zo_options={"epz": 1e-3})
    with pytest.raises(ValueError, match="'fo-adam'"):
        ZOTrainer(model=model, args=args, train_dataset=_dataset(), zo_method="fo-adam")
    with pytest.raises(ValueError, match="optimizers="):
        ZOTrainer(
            model=model,
            args=args,
            train_dataset=_dataset(),
            optimizers=(torch.optim.SGD(model.parameters(), lr=0.1), None),
        )


# ---------------------------------------------------------------------------------------------- two processes
def _rank_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    from llm.distributed import close_process_group, replicas_identical

    model = build_opt_from_preset("tiny", seed=rank)  # rank 1 starts elsewhere: the start-up broadcast must fix it
    trainer = ZOTrainer(
        model=model,
        args=_args(Path(out_dir) / "run", max_steps=3, learning_rate=1e-2),
        train_dataset=_dataset(),
        zo_method="zo-sgd",
        zo_options={"eps": 1e-3},
    )
    trainer.train()
    params = [p for p in model.parameters()]
    torch.save(
        {
            "identical": replicas_identical(params),
            "bytes": trainer.zo_communication.bytes,
            "calls": trainer.zo_communication.calls,
            "sync_bytes": trainer.zo_sync_bytes,
            "ddp": isinstance(trainer.model_wrapped, torch.nn.parallel.DistributedDataParallel),
            "params": [p.detach().clone() for p in params],
            "loss": [r["loss"] for r in trainer.state.log_history if "loss" in r],
            "grads": sum(p.grad is not None for p in params),
        },
        os.path.join(out_dir, f"rank{rank}.pt"),
    )
    del trainer, model
    close_process_group()


@pytest.mark.distributed
def test_two_gloo_ranks_exchange_scalar_losses_and_stay_identical(tmp_path: Path) -> None:
    run_ranks(_rank_worker, (str(tmp_path),), world=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["identical"] and r1["identical"]
    assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"], strict=True))
    start = build_opt_from_preset("tiny", seed=0)
    assert any(not torch.equal(a, s.detach()) for a, s in zip(r0["params"], start.parameters(), strict=True))
    # no DDP wrapper; one start-up broadcast of rank 0's parameters and buffers, then scalars only:
    # 3 steps x 2 evaluations, each one all-reduce of two float64 scalars; no gradient anywhere
    state_bytes = sum(t.numel() * t.element_size() for t in [*start.parameters(), *start.buffers()])
    assert not r0["ddp"] and not r1["ddp"]
    assert r0["sync_bytes"] == r1["sync_bytes"] == state_bytes
    assert r0["calls"] == r1["calls"] == 6 and r0["bytes"] == r1["bytes"] == 6 * 16
    assert r0["grads"] == r1["grads"] == 0
    assert r0["loss"] == r1["loss"]  # the global-batch loss on both ranks


# ---------------------------------------------------------------------------------------------- the example script
def test_example_script_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/hf_trainer_sst2.py on the SST-2 fixture with a tiny random BERT: trains, evaluates, resumes."""
    import importlib.util
    import json
    import shutil

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("hf_trainer_sst2", repo / "examples" / "hf_trainer_sst2.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    data = tmp_path / "sst2"
    data.mkdir()
    for split in ("train", "dev"):
        shutil.copy(repo / "tests" / "fixtures" / "sst2_tiny.tsv", data / f"{split}.tsv")
    out = tmp_path / "run"
    common = [
        "--data-dir",
        str(data),
        "--batch-size",
        "4",
        "--grad-accum",
        "2",
        "--num-train",
        "11",
        "--eval-steps",
        "3",
        "--save-steps",
        "3",
        "--opt",
        "eps=1e-3",
        "--lr",
        "1e-3",
        "--out",
        str(out),
    ]
    assert example.main([*common, "--steps", "3"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert first["steps"] == 3 and 0.0 <= first["dev_accuracy"] <= 1.0 and first["num_dev"] == 11
    # 11 examples in micro-batches of 4, 4, 3: steps of 2, 1, 2 micro-batches, 2 evaluations each
    assert first["forward_passes"] == 6 and first["forward_calls"] == 2 * (2 + 1 + 2)
    assert (out / "checkpoint-3" / "optimizer.pt").exists()
    assert example.main([*common, "--steps", "6", "--resume"]) == 0
    second = json.loads((out / "results.json").read_text())
    assert second["steps"] == 6 and second["forward_passes"] == 12
    capsys.readouterr()
    assert example.main([*common, "--steps", "3", "--method", "no-such-method"]) == 2
    assert "'no-such-method'" in capsys.readouterr().err
