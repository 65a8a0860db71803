"""How the ranks of a stage find each other, without listening where nobody asked.

A one-process stage (the default on CPU) needs no rendezvous at all: an in-memory store
replaces the TCP store that `env://` would start, which listens on every interface whatever
MASTER_ADDR says, and gloo is kept on the loopback device. Several processes (a GPU node, a
hostfile) rendezvous as DeepSpeed's launcher tells them to.
"""

from __future__ import annotations

import os


def init_process_group(backend: str) -> None:
    import deepspeed
    import torch.distributed as dist

    if os.environ.get("WORLD_SIZE", "1") == "1" and not dist.is_initialized():
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
        # DeepSpeed's CPU backend builds its shared-memory all-reduce op (a C++ JIT build)
        # whatever the world size. One rank never reduces with a peer: skip it, through the
        # switch DeepSpeed itself reads for ops this machine cannot build. It cost 0.3 s a
        # stage, and ~25 s in a fresh environment, whose first stage compiles it.
        from deepspeed.ops import __compatible_ops__

        __compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend=backend)  # a no-op when initialised above
