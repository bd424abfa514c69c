"""The processes of one run: a single one, or the ranks torchrun started (DistributedDataParallel).

    SOLO                          one process: every exchange returns what it was given
    Ranks.start(device) -> Ranks  this process's place in torchrun's group (``torch.distributed``)
    group.rank, .world, .local_rank, .machines, .is_main
    group.shard(batch_indices)    this rank's share of a global batch
    group.decide(*flags)          rank 0's yes/no decisions (stop, write an event, a checkpoint), for every rank
    group.sum(tensor)             summed over the ranks (the training loss, the correct count, images)
    group.gather(obj) -> list     every rank's ``obj`` on rank 0 (None on the others)
    group.share(obj)              rank 0's ``obj`` on every rank
    group.close()

Rank 0 alone writes the run folder; each rank trains on its share of every
global batch of the epoch's seeded order (rank r takes positions r, r + W, ...:
DistributedSampler's striding, applied per batch), so the union of the shares
is exactly the batch one process would have taken, and the averaged gradient
is the same. The gradients go through the main backend (NCCL on GPUs, gloo on
the CPU); the small decisions and Python objects through a gloo group, so they
never wait on the GPU.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch

TIMEOUT = timedelta(minutes=60)  # rank 0 evaluates the test split while the others wait


class Solo:
    """One process: nothing to exchange."""

    rank = 0
    world = 1
    local_rank = 0
    machines = 1
    is_main = True

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        return indices

    def decide(self, *flags: bool) -> tuple[bool, ...]:
        return tuple(bool(f) for f in flags)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def gather(self, obj) -> list:
        return [obj]

    def share(self, obj):
        return obj

    def close(self) -> None:
        pass


SOLO = Solo()


class Ranks(Solo):
    """This process's place among the ranks torchrun started (RANK, WORLD_SIZE, LOCAL_RANK...)."""

    def __init__(self, control):
        import torch.distributed as dist

        self._dist = dist
        self._control = control
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.machines = max(1, self.world // int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world))))
        self.is_main = self.rank == 0

    @classmethod
    def start(cls, device: torch.device) -> "Ranks":
        """Join torchrun's group: NCCL for a CUDA device, gloo on the CPU."""
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", timeout=TIMEOUT, device_id=device)
            control = dist.new_group(backend="gloo", timeout=TIMEOUT)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
            control = None  # the default group is gloo already
        return cls(control)

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        return indices[self.rank :: self.world]

    def decide(self, *flags: bool) -> tuple[bool, ...]:
        decided = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
        self._dist.broadcast(decided, src=0, group=self._control)
        return tuple(bool(v) for v in decided.tolist())

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        self._dist.all_reduce(values)
        return values

    def gather(self, obj) -> list | None:
        gathered = [None] * self.world if self.is_main else None
        self._dist.gather_object(obj, gathered, dst=0, group=self._control)
        return gathered

    def share(self, obj):
        box = [obj]
        self._dist.broadcast_object_list(box, src=0, group=self._control)
        return box[0]

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


def under_torchrun() -> bool:
    """Whether torchrun started this process (it sets these for every rank)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


def is_lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is what a rank sees when another rank of its run died (killed, crashed):
    a failed collective, a closed connection, a broken store."""
    import torch.distributed as dist

    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("gloo", "nccl", "connection closed", "connection reset", "broken pipe", "peer"))
