"""Data-parallel training over several processes: MPI between CPU ranks, NCCL between GPUs.

    comm = nx.distributed.init()          # under mpiexec: MPI (mpi4py); otherwise one process
    model.fit(X, y, batch_size=256, distributed=comm)

Every rank holds the same model and the same data. Each global batch is split across the ranks
in contiguous, near-equal parts; each rank computes the mean gradient of its part, weights it by
its share of the batch, and one allreduce of the flat gradient buffer sums them into the global
batch's mean gradient, so every rank takes the same optimizer step as one process training with
that batch would (to rounding). The collectives are MPI's (mpi4py's in-place `Allreduce` on NumPy
buffers) and NCCL's (CuPy's `cupy.cuda.nccl`, bootstrapped over MPI: nn_xp/backends/nccl.py); nn_xp
writes no transport.

The backends:
- "mpi": mpi4py's COMM_WORLD; NumPy buffers directly, GPU buffers staged through the host (device
  to host, Allreduce, host to device): for GPUs without NCCL, or several ranks sharing one GPU;
- "nccl": between GPUs, one rank per GPU, with MPI for everything else;
- "single": one process (the communicator when the program was not launched under MPI).
"auto" takes "nccl" where ranks have GPUs of their own and NCCL is there, else "mpi" under MPI,
else "single".
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np

from .. import backends
from ..backends.nccl import NcclGroup, nccl_status
from ..optim.base import map_state, state_arrays

BACKENDS = ("auto", "mpi", "nccl", "single")
# Variables that MPICH's Hydra, Open MPI, Intel MPI and Slurm's PMI set in every rank they start.
_LAUNCH_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
_MISSING = "the 'mpi' extra is not installed: pip install 'nn_xp[mpi]' (mpi4py with MPICH)"


def launched_under_mpi() -> bool:
    """True when this process was started by an MPI launcher (mpiexec, mpirun, srun)."""
    return any(name in os.environ for name in _LAUNCH_VARIABLES)


def mpi_status() -> tuple[bool, str]:
    """(whether mpi4py imports and MPI initialises, its library version or why not). Never raises."""
    try:
        from mpi4py import MPI
    except Exception as error:  # ImportError, or a broken MPI library
        return False, f"{_MISSING} ({type(error).__name__}: {error})"
    return True, MPI.Get_library_version().strip().splitlines()[0]


class Communicator:
    """One process of a data-parallel group: `rank` in 0..size-1 of `size` processes.

    Subclasses give the collectives; this base is the single process, where each is a no-op.
    """

    name = "single"
    rank = 0
    size = 1
    local_rank = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"

    def share(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's share of n items (`part`)."""
        return part(n, self.rank, self.size)

    def allreduce(self, array):
        """Sum `array` over the ranks, in place (NumPy or CuPy, contiguous); returns it."""
        return array

    def allreduce_host(self, values):
        """Sum a small float64 NumPy vector over the ranks; returns the sums."""
        return np.asarray(values, dtype=np.float64)

    def broadcast(self, array, root: int = 0):
        """Overwrite `array` (NumPy or CuPy, contiguous) on every rank with root's; returns it."""
        return array

    def broadcast_object(self, value, root: int = 0):
        """Root's `value` (anything picklable) on every rank."""
        return value

    def allgather_object(self, value) -> list:
        """Every rank's `value`, in rank order, on every rank."""
        return [value]

    def abort(self, message: str, code: int = 1):
        """Stop every rank now, `message` on stderr (used when one rank fails mid-training)."""
        raise SystemExit(code)

    def device(self) -> str:
        """The device for this rank: its own GPU ("cuda:<local rank>") when there are GPUs, else "cpu"."""
        return backends.rank_device(self.local_rank)


class MPICommunicator(Communicator):
    """mpi4py's COMM_WORLD; GPU arrays are staged through host memory."""

    name = "mpi"

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError as error:
            raise RuntimeError(f"distributed training needs MPI: {_MISSING}") from error
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local_rank = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()

    def allreduce(self, array):
        if backends.is_host_array(array):
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
            return array
        host = backends.to_numpy(array)  # device to host, Allreduce, host to device
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        array[...] = backends.to_device(host, backends.device_of(array))
        return array

    def allreduce_host(self, values):
        values = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, values, op=self.MPI.SUM)
        return values

    def broadcast(self, array, root: int = 0):
        if backends.is_host_array(array):
            self.comm.Bcast(array, root=root)
            return array
        host = backends.to_numpy(array)
        self.comm.Bcast(host, root=root)
        array[...] = backends.to_device(host, backends.device_of(array))
        return array

    def broadcast_object(self, value, root: int = 0):
        return self.comm.bcast(value, root=root)

    def allgather_object(self, value) -> list:
        return self.comm.allgather(value)

    def abort(self, message: str, code: int = 1):
        sys.stderr.write(f"nn_xp: {message}; stopping all {self.size} ranks\n")
        sys.stderr.flush()
        self.comm.Abort(code)


class NCCLCommunicator(MPICommunicator):
    """NCCL between the ranks' GPUs for the gradient allreduce, bootstrapped and helped by MPI."""

    name = "nccl"

    def __init__(self):
        super().__init__()
        ok, why = nccl_status()
        if not ok:
            raise RuntimeError(f"backend='nccl' cannot be used: {why}")
        self.group = NcclGroup(self.size, self.rank, self.device(), lambda uid: self.comm.bcast(uid, root=0))

    def allreduce(self, array):
        if backends.is_host_array(array):
            return super().allreduce(array)
        return self.group.allreduce(array)

    def broadcast(self, array, root: int = 0):
        if backends.is_host_array(array):
            return super().broadcast(array, root)
        return self.group.broadcast(array, root)


def init(backend: str = "auto") -> Communicator:
    """The communicator of this process: see the module docstring for the backends.

    Raises:
        ValueError: an unknown backend name.
        RuntimeError: "mpi" or "nccl" asked for where they cannot be had (the message names the
            'mpi' extra, or why NCCL is not usable); "auto" under an MPI launcher without mpi4py.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "single" or (backend == "auto" and not launched_under_mpi()):
        return Communicator()
    if backend == "nccl":
        return NCCLCommunicator()
    comm = MPICommunicator()
    if backend == "auto" and comm.size > 1 and _own_gpus(comm) and nccl_status()[0]:
        return NCCLCommunicator()
    return comm


def _own_gpus(comm) -> bool:
    """True when every rank on each machine can have a GPU of its own."""
    count = backends.cuda_status()[0]
    local_sizes = comm.allgather_object(comm.local_rank)
    return count > 0 and max(local_sizes) < count


def resolve(distributed):
    """fit's `distributed` argument as a communicator, or None for plain single-process training."""
    if distributed is None or distributed is False:
        return None
    if distributed is True:
        return init()
    if isinstance(distributed, Communicator):
        return distributed
    raise TypeError(
        f"distributed must be None, True or a communicator from nx.distributed.init(), got {distributed!r}"
    )


def part(n: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous, near-equal share of n items (np.array_split's cut)."""
    return n * rank // size, n * (rank + 1) // size


def data_fingerprint(X, Y) -> tuple:
    """A cheap summary of the data (shapes, dtypes and a hash of a few rows) to compare across ranks."""
    n = X.shape[0]
    rows = np.asarray(sorted({0, n // 3, n // 2, n - 1}))
    digest = hashlib.sha256()
    for array in (X, Y):
        xp = backends.get_namespace(array)
        picked = xp.take(array, backends.to_device(rows, backends.device_of(array)), axis=0)
        digest.update(np.ascontiguousarray(backends.to_numpy(picked)).tobytes())
    return tuple(X.shape), str(X.dtype), tuple(Y.shape), str(Y.dtype), digest.hexdigest()[:16]


def check_same_data(comm, what: str, *arrays) -> None:
    """Raise ValueError on every rank when the ranks were given different `arrays`."""
    prints = comm.allgather_object(data_fingerprint(*arrays))
    for rank, fingerprint in enumerate(prints):
        if fingerprint != prints[0]:
            raise ValueError(
                f"the ranks were given different {what}: rank {rank} has (shapes, dtypes, sample hash) "
                f"{fingerprint}, rank 0 has {prints[0]}; every rank must pass the same data"
            )


class RanksDiffer(ValueError):
    """The ranks were given different settings. Raised on every rank; `silent` on all but rank 0,
    whose message names what differs, so that a command line says it once."""

    def __init__(self, message: str, silent: bool = False):
        super().__init__(message)
        self.silent = silent


def _shown(value) -> str:
    if value is None or value is False:
        return "not given"
    if value is True:
        return "given"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def check_same_settings(comm, settings: dict, what: str = "options", spell=lambda key: key) -> None:
    """Raise RanksDiffer on every rank when any rank's `settings` differ from rank 0's.

    `settings` are JSON-ready values (one allgather of their JSON text, so ranks that differ in
    anything, however deep, never reach a collective the others skip). The message names each
    differing key as `spell(key)` with rank 0's value and the first differing rank's.
    """
    import json

    texts = comm.allgather_object(json.dumps(settings, sort_keys=True, default=str))
    everyone = [json.loads(text) for text in texts]
    mine = everyone[0]
    for rank, theirs in enumerate(everyone[1:], start=1):
        differing = [key for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)]
        if differing:
            said = "; ".join(f"{spell(key)} is {_shown(mine.get(key))} on rank 0 but {_shown(theirs.get(key))} "
                             f"on rank {rank}" for key in differing)
            raise RanksDiffer(f"the ranks were given different {what}: {said}; every rank must be given the same",
                              silent=comm.rank != 0)


def broadcast_training_state(model, comm) -> None:
    """Rank 0's parameters, buffers, optimizer state, generator state and dropout key on every rank."""
    params = model.parameters()
    if getattr(params, "flat", None) is not None and params.is_packed():
        comm.broadcast(params.flat)
    else:
        model.set_parameters([comm.broadcast(np.ascontiguousarray(backends.to_numpy(p))) for p in params])
    if model.buffers():  # through host copies: the layers replace their buffers, so new arrays do
        model.set_buffers([comm.broadcast(np.ascontiguousarray(backends.to_numpy(b))) for b in model.buffers()])
    opt = model.optimizer
    mine = sorted(state_arrays(opt.state))
    steps, names = comm.broadcast_object((opt.step_count, mine))
    if mine != names:
        raise RuntimeError(f"rank {comm.rank}: optimizer state {mine} differs from rank 0's {names}")
    opt.step_count = steps

    def from_rank_0(arrays):
        if all(backends.ops_of(array).mutable for array in arrays):
            for array in arrays:
                comm.broadcast(array)
            return arrays  # written in place: a packed state stays packed
        # An immutable backend's arrays: replaced by copies of rank 0's.
        return [backends.to_device(comm.broadcast(np.ascontiguousarray(backends.to_numpy(array))),
                                   backends.device_of(array)) for array in arrays]

    opt.state = map_state(opt.state, from_rank_0)
    model.rng.bit_generator.state = comm.broadcast_object(model.rng.bit_generator.state)
    model.dropout_key = comm.broadcast_object(model.dropout_key)
