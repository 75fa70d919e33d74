"""``ZOTrainer``: every zotheory method inside the Hugging Face ``Trainer``.

A user's script switches from first-order to zeroth-order training by changing the class and one
argument::

    trainer = ZOTrainer(model=model, args=training_args, train_dataset=train, eval_dataset=dev,
                        zo_method="jaguar-signsgd", zo_options={"eps": 1e-3})
    trainer.train()

What is overridden (and nothing else of the inner loop):

* :meth:`ZOTrainer.create_optimizer` builds the registered method over the model's trainable
  parameters (``requires_grad``: every weight, or the adapters of a PEFT/LoRA model) with
  ``seed = args.seed``. The lr is ``zo_options["lr"]`` when given, else ``args.learning_rate``
  (parameter-free methods such as ``adanaged`` take ``lr`` as a multiplier of their own step:
  pass ``zo_options={"lr": 1.0}``). The Trainer sees it through :class:`DeferredStepOptimizer`,
  which shares the ZO optimizer's parameter groups, so Hugging Face's learning-rate schedulers
  write the ZO groups' ``lr``.
* :meth:`ZOTrainer.training_step` collects the micro-batches of one optimizer step. At the last
  one it runs the zeroth-order step through :func:`llm.step.zo_step`, the step the plain loop of
  :mod:`llm.train` uses: every closure evaluation runs all micro-batches at the same perturbed
  parameters (model in eval mode, ``torch.inference_mode``), and their mean losses are combined,
  weighted by their numbers of examples, into one closure value. So
  ``per_device_train_batch_size x gradient_accumulation_steps`` examples act as one batch, with
  the activation memory of one micro-batch. It returns 0 for the other micro-batches and the
  step's loss for the last one, so the logged loss is the mean step loss.
* The Trainer's own ``optimizer.step()`` (no closure) does nothing, ``zero_grad`` does nothing,
  and gradient clipping finds no gradient (no ``.grad`` is ever created); ``grad_norm`` is
  therefore dropped from the logs, which gain ``zo_forward_passes`` and ``zo_forward_calls``
  (:class:`llm.step.ForwardCount`).
* Under ``torchrun`` / ``accelerate launch`` each rank evaluates its own micro-batches and the
  closure all-reduces two float64 scalars per evaluation (:mod:`llm.distributed`): every rank
  sees the global-batch loss, draws the same directions and applies the same update, so the
  replicas stay identical without communicating gradients. The model is not wrapped in
  ``DistributedDataParallel`` (:meth:`ZOTrainer.create_accelerator_and_postprocess` asks
  accelerate for its evaluation-mode preparation): DDP would allocate a gradient bucket as large
  as the trainable weights, which ZO never fills, and its reducer holds the process group until
  garbage collection, where tearing it down can deadlock the interpreter at exit (a gloo worker
  thread waits for the GIL that the destructor holds while joining it). In DDP's place, the
  first step broadcasts rank 0's parameters and buffers once
  (:func:`llm.distributed.broadcast_module_state`), so replicas that were initialised
  differently start identical.
* Checkpoints: ``optimizer.pt`` holds the ZO optimizer's ``state_dict`` (seed, step counter,
  method state, direction policy) and the forward-pass counters, so ``resume_from_checkpoint``
  continues with the same directions as an uninterrupted run.

Not supported (a clear error at construction): first-order methods (use ``transformers.Trainer``),
``fp16`` mixed precision (its gradient scaler has no gradient to unscale; load the model in
float16 or use ``bf16``), DeepSpeed and FSDP (sharded weights; zeroth-order data parallelism
needs none, see ``docs/scale.md``).

TRL: this module does not depend on TRL. ``trl.SFTTrainer`` subclasses ``transformers.Trainer``
without replacing ``create_optimizer`` or ``training_step``, so a class that lists ``ZOTrainer``
first combines them: ``class ZOSFTTrainer(ZOTrainer, SFTTrainer): pass``, built with the
``zo_*`` keywords plus SFTTrainer's own arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from llm.config import FinetuneConfig
from llm.distributed import CommunicationLog, broadcast_module_state
from llm.methods import build_optimizer, check_method_options
from llm.models import named_trainable_parameters
from llm.objective import eval_closure
from llm.step import ForwardCount, zo_step

__all__ = ["ZOTrainer", "DeferredStepOptimizer"]

_COUNTS_KEY = "zo_trainer_forward_count"


class DeferredStepOptimizer(torch.optim.Optimizer):
    """A zeroth-order optimizer as the Hugging Face loop sees it.

    ``param_groups``, ``state`` and ``defaults`` are the ZO optimizer's own (a scheduler that sets
    ``group["lr"]`` sets the ZO step's lr). ``step()`` without a closure does nothing: the ZO step
    already ran in :meth:`ZOTrainer.training_step`. ``zero_grad()`` does nothing (there are no
    gradients). ``state_dict()`` is the ZO optimizer's plus the forward-pass counters.
    Like accelerate's ``AcceleratedOptimizer``, it does not call ``Optimizer.__init__``.
    """

    def __init__(self, zo: torch.optim.Optimizer) -> None:  # noqa: D107 - documented on the class
        self.zo = zo
        self.count = ForwardCount()

    # Optimizer declares these three as plain attributes; here they are read-only views of the wrapped ZO
    # optimizer's, hence the ignore[override] on each property.
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.zo.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.zo.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.zo.defaults

    def step(self, closure: Any = None) -> Any:
        return None if closure is None else self.zo.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        return None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.zo.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        sd = dict(self.zo.state_dict())
        sd[_COUNTS_KEY] = dict(vars(self.count))
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        counts = sd.pop(_COUNTS_KEY, None)
        self.zo.load_state_dict(sd)
        self.count = ForwardCount(**counts) if counts is not None else ForwardCount()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.zo!r})"


class ZOTrainer(Trainer):
    """``transformers.Trainer`` that trains with a zotheory zeroth-order method (module docstring).

    Args:
        zo_method: a registry name (``python -m llm.finetune --list-methods``): ``zo-sgd``,
            ``jaguar-signsgd``, ``jaguar-muon``, ``adanaged``, ...
        zo_options: the method's options (``eps``, ``q``, ``momentum``, ``lr``, ...), typed and checked
            against its constructor; ``seed`` comes from ``args.seed``.
        zo_policy: a direction policy (``ldsd``, ``gv``, ``greedy``, ``carried-best``) or ``None``.
        zo_policy_options: the policy's options.
        *args, **kwargs: those of ``transformers.Trainer`` (``optimizers`` and
            ``optimizer_cls_and_kwargs`` are refused: the method defines the optimizer).

    Raises:
        ValueError: an unknown method, option or policy (named), a first-order method, or an
            unsupported setting (fp16 mixed precision, DeepSpeed, FSDP).
    """

    def __init__(
        self,
        *args: Any,
        zo_method: str = "zo-sgd",
        zo_options: Mapping[str, Any] | None = None,
        zo_policy: str | None = None,
        zo_policy_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        optimizers = kwargs.get("optimizers", (None, None))
        if optimizers[0] is not None or kwargs.get("optimizer_cls_and_kwargs") is not None:
            raise ValueError(
                f"ZOTrainer builds the optimizer of zo_method={zo_method!r}; do not pass optimizers= "
                "or optimizer_cls_and_kwargs="
            )
        cfg = FinetuneConfig(
            method=zo_method, opt=dict(zo_options or {}), policy=zo_policy, policy_opt=dict(zo_policy_options or {})
        )
        self.zo_spec, self.zo_options, self._zo_policy_cls, self._zo_policy_options = check_method_options(cfg)
        if self.zo_spec.kind != "zo":
            raise ValueError(f"zo_method {zo_method!r} is a first-order method; use transformers.Trainer for it")
        super().__init__(*args, **kwargs)
        if self.args.fp16:
            raise ValueError(
                "ZOTrainer does not support fp16=True: its gradient scaler has no gradient to unscale in "
                "zeroth-order training; load the model in float16 (dtype=torch.float16) or use bf16=True"
            )
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise ValueError(
                "ZOTrainer does not support DeepSpeed or FSDP: zeroth-order data parallelism exchanges "
                "scalar losses only (docs/scale.md); launch plain torchrun / accelerate processes"
            )
        self.zo_optimizer: torch.optim.Optimizer | None = None
        self._zo_micro_batches: list[Any] = []
        self._zo_comm: Any = None
        self.zo_sync_bytes: int | None = None  # bytes of the start-up broadcast, once made (data parallelism)

    # ------------------------------------------------------------------ accelerate
    def create_accelerator_and_postprocess(self) -> None:
        """The Trainer's accelerator, whose ``prepare_model`` never wraps the model in DDP (module docstring)."""
        super().create_accelerator_and_postprocess()
        self.accelerator.prepare_model = functools.partial(_prepare_model_without_ddp, self.accelerator.prepare_model)

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """Build the ZO method over the trainable parameters, wrapped in :class:`DeferredStepOptimizer`."""
        if self.optimizer is None:
            net = self.model if model is None else model
            if net is None:
                raise ValueError("ZOTrainer.create_optimizer: no model to optimize (model=None and self.model is None)")
            options = dict(self.zo_options)
            options.setdefault("lr", float(self.args.learning_rate))
            policy = self._zo_policy_cls(**self._zo_policy_options) if self._zo_policy_cls is not None else None
            self.zo_optimizer = build_optimizer(
                self.zo_spec, named_trainable_parameters(net), options, seed=int(self.args.seed), policy=policy
            )
            self.optimizer = DeferredStepOptimizer(self.zo_optimizer)
        return self.optimizer

    @property
    def zo_forward_count(self) -> ForwardCount:
        """Training forward passes so far (restored with a checkpoint)."""
        return self._deferred().count

    def _deferred(self) -> DeferredStepOptimizer:
        opt = self.optimizer
        while opt is not None and not isinstance(opt, DeferredStepOptimizer):
            opt = getattr(opt, "optimizer", None)  # accelerate's AcceleratedOptimizer wraps it
        if opt is None:
            raise RuntimeError("ZOTrainer: the optimizer is not created yet (call train())")
        return opt

    # ------------------------------------------------------------------ the step
    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """Collect this micro-batch; at the last micro-batch of the optimizer step, run the ZO step on all
        of them (one closure, one perturbation) and return its loss; return 0 before that."""
        self._zo_micro_batches.append(self._prepare_inputs(inputs))
        needed = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        if len(self._zo_micro_batches) < needed:
            return torch.zeros((), device=self.args.device)
        micro, self._zo_micro_batches = self._zo_micro_batches, []
        net = self.accelerator.unwrap_model(model)
        if self._data_parallel() and self.zo_sync_bytes is None:
            self.zo_sync_bytes = broadcast_module_state(net)
        losses = [eval_closure(net, functools.partial(self._zo_micro_loss, net, batch)) for batch in micro]
        counts = [_num_examples(batch) for batch in micro]
        if self.zo_optimizer is None:
            raise RuntimeError("ZOTrainer: the optimizer is not created yet (call train())")
        loss, count = zo_step(self.zo_optimizer, losses, counts, data_parallel=self._data_parallel(), log=self._zo_comm)
        count.add_to(self._deferred().count)
        return torch.tensor(float(loss), dtype=torch.float32, device=self.args.device)

    def _zo_micro_loss(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """The Trainer's loss of one micro-batch, its own mean (``compute_loss`` may pop labels: a copy)."""
        with self.compute_loss_context_manager():
            loss = self.compute_loss(model, dict(inputs))
        if not isinstance(loss, torch.Tensor):  # only return_outputs=True (not passed) gives a tuple
            raise TypeError(f"ZOTrainer: compute_loss returned {type(loss).__name__}, expected the loss tensor")
        return loss.detach()

    def _data_parallel(self) -> bool:
        if self.args.world_size <= 1:
            return False
        if self._zo_comm is None:
            self._zo_comm = CommunicationLog()
        return True

    @property
    def zo_communication(self) -> Any:
        """The :class:`llm.distributed.CommunicationLog` of this rank (``None`` in one process)."""
        return self._zo_comm

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Hugging Face logging without ``grad_norm`` (there is no gradient), with the forward-pass counts."""
        logs = {k: v for k, v in logs.items() if k != "grad_norm"}
        if "loss" in logs and self.optimizer is not None:
            count = self.zo_forward_count
            logs["zo_forward_passes"] = count.forward_passes
            logs["zo_forward_calls"] = count.forward_calls
        super().log(logs, start_time)


def _prepare_model_without_ddp(
    prepare_model: Any, model: nn.Module, device_placement: bool | None = None, evaluation_mode: bool = False
) -> nn.Module:
    """``Accelerator.prepare_model`` in evaluation mode: device placement, mixed precision and compilation
    as configured, and no ``DistributedDataParallel`` wrapper."""
    return prepare_model(model, device_placement=device_placement, evaluation_mode=True)


def _num_examples(inputs: Mapping[str, Any]) -> int:
    """Rows of a micro-batch: the first dimension of its first tensor."""
    for value in inputs.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    raise ValueError(f"cannot count the examples of a micro-batch with keys {sorted(inputs)}: no tensor input")
