"""Where the engine computes: device names and joining a ``torchrun`` process group."""

from __future__ import annotations

import os


class DeviceError(Exception):
    """The requested device is not available; says which."""


def resolve_device(text: str) -> str:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``, checked."""
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {text!r}: no CUDA device is available")
    if text != "cpu" and not text.startswith("cuda"):
        raise DeviceError(f"device {text!r}: use cpu, cuda, cuda:N or auto")
    return text


def launched_distributed() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str) -> str:
    """Join the ``torchrun`` process group (NCCL on CUDA, gloo on CPU); returns this rank's device
    (``cuda:LOCAL_RANK`` on CUDA)."""
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl")
    else:
        dist.init_process_group(backend="gloo")
    return device


def close_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
