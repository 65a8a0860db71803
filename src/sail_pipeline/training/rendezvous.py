"""How the ranks of a stage find each other, without listening where nobody asked.

A one-process stage (the default on CPU) needs no rendezvous at all: an in-memory store
replaces the TCP store that `env://` would start, and gloo is kept on the loopback device.

Several processes (a GPU node, a hostfile) meet at the TCP store that rank 0 serves at
MASTER_ADDR:MASTER_PORT, as DeepSpeed's launcher tells them. `env://` would serve it on every
interface (`:::port`) whatever MASTER_ADDR says; here rank 0 binds the listening socket to
MASTER_ADDR itself and hands it to the store. DeepSpeed's launcher sets MASTER_ADDR to
127.0.0.1 on one node, and to the first host's address with a hostfile, so the store listens
on the loopback device, or on the one address the other nodes use.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket

from sail_pipeline.errors import UserError

log = logging.getLogger(__name__)


class UnusableMasterAddress(UserError, OSError):
    """MASTER_ADDR is not an address of the machine that runs rank 0."""


def init_process_group(backend: str) -> None:
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized():
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0,
                                    world_size=1)
            # DeepSpeed's CPU backend builds its shared-memory all-reduce op (a C++ JIT build)
            # whatever the world size. One rank never reduces with a peer: skip it, through
            # the switch DeepSpeed itself reads for ops this machine cannot build. It cost 0.3 s
            # a stage, and ~25 s in a fresh environment, whose first stage compiles it.
            from deepspeed.ops import __compatible_ops__

            __compatible_ops__["deepspeed_shm_comm"] = False
        else:
            rank = int(os.environ["RANK"])
            address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
            if _is_loopback(address):  # every rank on this machine: no traffic leaves it
                os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
                os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                    store=rendezvous_store(address, port, rank, world_size))
    deepspeed.init_distributed(dist_backend=backend)  # a no-op when initialised above


def rendezvous_store(address: str, port: int, rank: int, world_size: int):
    """The TCP store of a multi-process stage; rank 0 serves it on `address` only."""
    from torch.distributed import TCPStore
    from torch.distributed.constants import default_pg_timeout

    listening = listen_on(address, port) if rank == 0 else None
    return TCPStore(address, port, world_size, is_master=rank == 0, timeout=default_pg_timeout,
                    master_listen_fd=listening)


def listen_on(address: str, port: int) -> int:
    """A socket listening on `address`:`port` alone; returns its file descriptor, which the
    store takes over."""
    try:
        candidates = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UnusableMasterAddress(f"MASTER_ADDR {address!r} does not resolve ({error}); "
                                    f"set runtime.launcher.master_addr") from error
    errors = []
    for family, kind, proto, _, where in candidates:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)
            sock.listen(socket.SOMAXCONN)
        except OSError as error:
            sock.close()
            errors.append(f"{where[0]}: {error.strerror}")
            continue
        log.info("rank 0 serves the rendezvous store on %s:%d only", where[0], port)
        return sock.detach()
    raise UnusableMasterAddress(
        f"rank 0 cannot listen on MASTER_ADDR {address!r} port {port} ({'; '.join(errors)}). "
        f"MASTER_ADDR must be an address of the machine that runs rank 0, and the port free: "
        f"set runtime.launcher.master_addr / master_port")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"
