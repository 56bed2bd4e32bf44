"""Data parallelism inside the training steps (issue 9): the two places where ranks must see the
same numbers for their parameters to stay identical.

Each rank trains on its own replay batch. The optimisers average gradients over ranks before
clipping (`average_gradients`), and the return normaliser takes its percentiles over the returns
of all ranks (`gather_cat`). Both act only inside an initialised torch.distributed process group
of more than one rank (torchrun, see dreamerctl/run/distributed.py); otherwise they return at
once, so single-process training is unchanged bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Ranks of the data-parallel job; 1 outside a process group."""
    if not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size()


def average_gradients(params: Sequence[Tensor], loss: Tensor) -> Tensor:
    """Replace each parameter's gradient by its mean over ranks, in one all_reduce of the
    flattened gradients; returns `loss` summed over ranks (finite only if every rank's is).

    A gradient missing on one rank counts as zero there; one missing on every rank stays None,
    so Adam leaves that parameter alone exactly as a single process would. The loss rides in the
    same buffer so that the non-finite check, made from reduced values only, skips or takes the
    step on every rank alike.
    """
    size = world_size()
    if size == 1:
        return loss.detach()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    present = [float(p.grad is not None) for p in params]
    flat = torch.cat([
        *(grad.detach().reshape(-1).float() for grad in grads),
        torch.tensor(present, device=loss.device),
        loss.detach().float().reshape(1),
    ])  # (sum of numels + len(params) + 1,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    total = sum(grad.numel() for grad in grads)
    seen = flat[total:total + len(params)].tolist()
    offset = 0
    for param, count in zip(params, seen, strict=True):
        numel = param.numel()
        if count > 0:
            mean = flat[offset:offset + numel].view_as(param) / size
            param.grad = mean.to(param.dtype)
        else:
            param.grad = None
        offset += numel
    return flat[-1]


def gather_cat(values: Tensor) -> Tensor:
    """`values` (N,) of every rank, concatenated in rank order: (world * N,). Every rank passes
    the same N (the same batch shape)."""
    size = world_size()
    if size == 1:
        return values
    parts = [torch.empty_like(values) for _ in range(size)]
    dist.all_gather(parts, values.contiguous())
    return torch.cat(parts)
