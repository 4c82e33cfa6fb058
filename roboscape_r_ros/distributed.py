"""Training in several processes under torchrun, with PyTorch's DistributedDataParallel (DDP).

    torchrun --standalone --nproc_per_node 2 -m roboscape_r_ros.cli train-wm --preset tiny

As in nanoGPT, a process is one rank of a group when torchrun set WORLD_SIZE > 1 in its environment;
otherwise it is the one process and nothing here changes what it does. The CLI opens the process
group (`process_group`: gloo for CPU tensors, NCCL for CUDA ones) around a command that supports it.
Inside, each rank

- trains on its own rows of every global batch (`shard`), drawn by one seeded sampler that all ranks
  run alike, and draws its rows of the global batch's random masks (`draw`), so the group sees
  exactly the samples and masks one process with the whole batch sees;
- has its gradients averaged by DDP (`data_parallel`) and logs metrics averaged over the ranks
  (`mean_metrics`);
- reads what rank 0 reads, but only rank 0 (`Ranks.main`) writes checkpoints, logs, TensorBoard
  and media.
A predictable error (RoboscapeError) comes from inputs every rank shares, so rank 0 prints its one
line; every rank exits with status 2 and torchrun stops the rest of the group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from roboscape_r_ros.config import ConfigError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank's device on its node: cuda:<local_rank>

    @classmethod
    def from_env(cls) -> Ranks:
        """This process's place in the group torchrun started (the one process without torchrun)."""
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        if world_size == 1:
            return cls()
        return cls(int(os.environ["RANK"]), world_size, int(os.environ["LOCAL_RANK"]))

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    def shard(self, batch_size: int, option: str) -> slice:
        """This rank's rows of a global batch of `batch_size` (the config option `option`)."""
        if batch_size % self.world_size:
            raise ConfigError(f"{option}={batch_size} does not split evenly over {self.world_size} processes")
        rows = batch_size // self.world_size
        return slice(self.rank * rows, (self.rank + 1) * rows)


def ranks() -> Ranks:
    """The group this process trains in now: Ranks() outside an open process group."""
    return Ranks.from_env() if dist.is_initialized() else Ranks()


Drawn = TypeVar("Drawn", torch.Tensor, np.ndarray)


def draw(sample: Callable[..., Drawn], size: tuple[int, ...], **kwargs: Any) -> Drawn:
    """`sample(size, **kwargs)` (e.g. torch.rand) for a batch of size[0] rows of a training batch.

    In a group every rank draws for the whole global batch from the same generator state (all ranks
    are seeded alike and draw alike) and keeps its own rows: together exactly one process's draw.
    """
    group = ranks()
    if group.world_size == 1:
        return sample(size, **kwargs)
    full = sample((size[0] * group.world_size, *size[1:]), **kwargs)
    return full[group.rank * size[0] : (group.rank + 1) * size[0]]


class _Loss(nn.Module):
    """A loss function as the forward of a module holding the trained parameters: DDP averages the
    gradients of the parameters of the module whose forward it runs."""

    def __init__(self, trained: nn.Module, loss_fn: Callable):
        super().__init__()
        self.trained, self.loss_fn = trained, loss_fn

    def forward(self, *args, **kwargs):
        return self.loss_fn(*args, **kwargs)


def data_parallel(trained: nn.Module, loss_fn: Callable) -> Callable:
    """`loss_fn` in one process; in a group the same function run through DistributedDataParallel, so
    that backward() averages the gradients of `trained`'s parameters over the ranks (and DDP starts
    every rank from rank 0's weights)."""
    if ranks().world_size == 1:
        return loss_fn
    return DistributedDataParallel(_Loss(trained, loss_fn))


def sum_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Each metric summed over the ranks (every rank must pass the same keys in the same order)."""
    if ranks().world_size == 1:
        return metrics
    values = torch.tensor(list(metrics.values()), dtype=torch.float64)  # a CPU tensor: reduced by gloo
    dist.all_reduce(values)
    return dict(zip(metrics, values.tolist()))


def mean_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the ranks (the global batch's value for a mean over equal shards)."""
    world_size = ranks().world_size
    return {key: value / world_size for key, value in sum_metrics(metrics).items()}


@contextmanager
def process_group(command: str, supported: bool) -> Iterator[Ranks]:
    """Join the process group torchrun set up (no-op for one process); left when the command succeeds.

    A rank that fails leaves without a goodbye: the others wait in a collective until torchrun,
    seeing the failure, stops them."""
    group = Ranks.from_env()
    if group.world_size == 1:
        yield group
        return
    if not supported:
        raise ConfigError(f"{command} runs in one process; run it without torchrun (WORLD_SIZE={group.world_size})")
    if torch.cuda.is_available():
        torch.cuda.set_device(group.local_rank)  # device "cuda" now means this rank's GPU
    # CPU tensors (metrics; CPU training) go through gloo, CUDA tensors through NCCL
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    yield group
    # rank 0 may still be writing files: a rank that tore its gloo connections down first was seen
    # to abort ("terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()
