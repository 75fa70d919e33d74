"""Data-parallel zero-order training with scalar-only communication.

Why it works. A zeroth-order step needs the model only through the scalar losses
``f(x + r z_j)`` and ``f(x - r z_j)``. If every rank holds the same parameters and draws
the same directions (same optimizer ``seed`` and step counter: directions are regenerated
from ``mix_seed(seed, step)``, never communicated), then the loss of the full batch is the
size-weighted mean of the ranks' shard losses. Wrapping each rank's closure so that it
returns that all-reduced mean makes every rank compute the same coefficients and apply
the same update: the replicas stay identical without ever broadcasting parameters or
gradients. Communication per evaluation: two float64 numbers (the weighted loss sum and
the example count), i.e. ``2 * 8 * evals_per_step`` bytes per step, whatever the model
size (first-order data parallelism all-reduces every gradient entry).

Gradient accumulation falls out of the same mechanism: :func:`accumulating_closure`
averages the losses of several micro-batches before the optimizer sees them (a request
MeZO users make, ``docs/theory.md`` §6.1).

Failure behaviour.
* A non-finite loss on one rank makes the all-reduced loss non-finite on every rank, so
  every rank's optimizer restores its parameters and raises (or skips) identically.
* A rank that dies or raises makes the collective raise on the others (gloo: connection
  closed); a rank that stops answering makes it time out after the process group's
  ``timeout`` (:func:`init_process_group_from_env`, ``--dist-timeout``). Either way the
  estimator's exception path restores the parameters before re-raising, so no replica is
  left perturbed, and the error is re-raised as :class:`RankFailure` naming this rank
  (the training loop adds the step).

Model parallelism for models that do not fit one device: load with
``device_map="auto"`` (``llm.models.load_causal_lm(..., device_map="auto")`` passes it to
``from_pretrained``, which spreads layers over the visible GPUs); the ZO optimizers
perturb each tensor on its own device (every generator is created on the tensor's device),
so nothing else changes. Data and model parallelism can be combined by giving each data-
parallel rank its own group of GPUs.

Launch with ``torchrun --nproc-per-node N python -m llm.finetune ... --distributed``
(gloo on CPUs, NCCL on GPUs).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

LossFn = Callable[[], torch.Tensor]


class RankFailure(RuntimeError):
    """A collective failed (another rank died or timed out); local parameters were restored."""


@dataclass
class CommunicationLog:
    """Bytes this rank sent through all-reduce, counted per call (payload only)."""

    calls: int = 0
    bytes: int = 0
    per_call: list[int] = field(default_factory=list)

    def record(self, tensor: torch.Tensor) -> None:
        n = tensor.numel() * tensor.element_size()
        self.calls += 1
        self.bytes += n
        self.per_call.append(n)


def init_process_group_from_env(backend: str | None = None, timeout: float | None = None) -> tuple[int, int]:
    """Initialise ``torch.distributed`` from torchrun's environment; returns ``(rank, world)``.

    ``backend`` defaults to NCCL when CUDA is available and gloo otherwise. ``timeout``: seconds
    a collective waits for the other ranks before it raises (``None``: torch's default, 30 min).
    """
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive finite number of seconds, got {timeout!r}")
    if not dist.is_initialized():
        for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise RuntimeError(f"environment variable {key} is not set; launch with torchrun")
        dist.init_process_group(
            backend or ("nccl" if torch.cuda.is_available() else "gloo"),
            timeout=None if timeout is None else timedelta(seconds=timeout),
        )
    return dist.get_rank(), dist.get_world_size()


#: Seconds :func:`close_process_group` leaves the GIL free for gloo's worker threads.
SETTLE_S: float = 0.05


def close_process_group(*, synchronise: bool = True) -> None:
    """End this rank's part in the default process group, so that the process can exit cleanly.

    gloo retires each finished collective on one of its worker threads, which takes the GIL to release
    the Python tensors the collective held. A rank that finishes its last collective and exits at once
    can start finalising the interpreter while such a thread still waits for the GIL; the thread is then
    torn down inside a C++ destructor and the process aborts ("terminate called without an active
    exception", exit code -6) after a run that succeeded. Seen with torch 2.13 on the CPU in about 1 of 6
    two-rank runs whose last collective came right before exit (``tests/test_distributed.py``).
    ``synchronise`` (the success path) first waits at a barrier, so that every rank's collectives are
    done; then the GIL is left free for :data:`SETTLE_S` before the group is destroyed. Pass
    ``synchronise=False`` after a failure: a dead or hung rank would never reach the barrier.
    """
    if not dist.is_initialized():
        return
    if synchronise:
        dist.barrier()
    time.sleep(SETTLE_S)  # sleeping releases the GIL: the worker threads retire their last works
    dist.destroy_process_group()


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous shard ``[start, stop)`` of ``n`` items for ``rank`` (sizes differ by at most 1)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of size {world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def data_parallel_closure(
    local_loss: LossFn,
    local_count: int,
    *,
    group: dist.ProcessGroup | None = None,
    log: CommunicationLog | None = None,
) -> LossFn:
    """Wrap a rank's closure so that it returns the size-weighted mean loss over all ranks.

    ``local_loss()`` returns the mean loss of this rank's shard of ``local_count`` examples.
    The returned closure all-reduces ``(local_count * loss, local_count)`` in float64 and
    returns ``sum / count``: the mean over the concatenated batch, identical on every rank.
    """
    if local_count < 0:
        raise ValueError(f"local example count must be >= 0, got {local_count}")

    def closure() -> torch.Tensor:
        loss = local_loss() if local_count > 0 else torch.zeros(())
        device = torch.device("cuda", torch.cuda.current_device()) if _backend(group) == "nccl" else torch.device("cpu")
        payload = torch.stack(
            [
                loss.detach().to(torch.float64).reshape(()) * local_count,
                torch.tensor(float(local_count), dtype=torch.float64),
            ]
        ).to(device)
        try:
            dist.all_reduce(payload, op=dist.ReduceOp.SUM, group=group)
        except Exception as exc:  # noqa: BLE001 - any collective failure means a broken world
            raise RankFailure(
                f"rank {dist.get_rank(group)} of {dist.get_world_size(group)}: the all-reduce of the loss failed, "
                f"another rank died, raised or stopped answering ({exc}); this rank's parameters were restored"
            ) from exc
        if log is not None:
            log.record(payload)
        return (payload[0] / payload[1]).to(loss.device)

    return closure


def accumulating_closure(micro_losses: Sequence[LossFn], counts: Sequence[int]) -> LossFn:
    """Average several micro-batch closures, weighted by their example counts.

    Equivalent to one closure on the concatenated batch when each ``micro_losses[k]``
    returns its micro-batch's mean loss; memory is that of one micro-batch.
    """
    if len(micro_losses) != len(counts) or not micro_losses:
        raise ValueError(
            f"need one count per micro-batch closure, got {len(micro_losses)} closures and {len(counts)} counts"
        )
    total = float(sum(counts))
    if total <= 0:
        raise ValueError(f"micro-batch counts must sum to a positive number, got {list(counts)}")

    def closure() -> torch.Tensor:
        acc = torch.zeros((), dtype=torch.float64)
        for loss_fn, n in zip(micro_losses, counts, strict=False):
            acc = acc + loss_fn().detach().to(torch.float64).cpu() * n
        return acc / total

    return closure


def broadcast_module_state(module: torch.nn.Module, src: int = 0, group: dist.ProcessGroup | None = None) -> int:
    """Overwrite every rank's parameters and buffers, in place, with rank ``src``'s; return the bytes sent.

    The one start-up exchange of zeroth-order data parallelism: the scalar-only steps keep replicas
    identical only if they start identical, and a user's per-rank initialisation (a LoRA adapter
    drawn from an unseeded generator, say) may differ. ``DistributedDataParallel`` does the same copy
    when it wraps a model; this one comes without DDP's gradient buckets (one buffer per trainable
    entry, memory that zeroth-order training never uses). Tied weights are sent once
    (``Module.parameters`` de-duplicates). A tensor that is not contiguous goes through a contiguous
    copy.
    """
    sent = 0
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            buf = t.data if t.data.is_contiguous() else t.data.contiguous()
            dist.broadcast(buf, src=src, group=group)
            if buf is not t.data:
                t.data.copy_(buf)
            sent += buf.numel() * buf.element_size()
    return sent


def parameters_digest(params: Sequence[torch.Tensor]) -> bytes:
    """SHA-256 of the parameters' raw bytes, in order: equal digests mean bit-identical tensors."""
    h = hashlib.sha256()
    for p in params:
        t = p.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()


def replicas_identical(params: Sequence[torch.Tensor], group: dist.ProcessGroup | None = None) -> bool:
    """True when every rank holds bit-identical parameters (compares SHA-256 digests)."""
    mine = torch.frombuffer(bytearray(parameters_digest(params)), dtype=torch.uint8)
    if _backend(group) == "nccl":
        mine = mine.cuda()
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, mine, group=group)
    return all(torch.equal(mine, other) for other in gathered)


def _backend(group: dist.ProcessGroup | None) -> str:
    return str(dist.get_backend(group)) if dist.is_initialized() else "gloo"
