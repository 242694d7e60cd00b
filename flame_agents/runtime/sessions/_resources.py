"""What this machine can run: its capacity (cpus, memory, NVIDIA GPUs) and the ledger of what
live instances hold.

Accounting is Ray's: an instance starts only when its session's ``resreq`` fits what is free,
and holds it until its process is gone. Only a ``resreq`` the client gave is accounted: a
session opened without one reserves nothing (as a Ray actor holds no CPU once placed), so many
such sessions share a small machine. A request larger than the whole machine could never start
and is refused when its session is created (:meth:`Ledger.never_fits`).

Capacity is what this process may use, not what the hardware has: the cpus of its affinity mask
and cgroup quota, physical memory capped by the cgroup limit, and the NVIDIA devices found (the
driver's ``/proc/driver/nvidia/gpus``, else ``nvidia-smi -L``) narrowed to the runtime's own
``CUDA_VISIBLE_DEVICES`` when it has one, whose entries then name the devices handed out.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flame_agents._wire import types_pb2

__all__ = [
    "Allocation",
    "Capacity",
    "Ledger",
    "default_resreq",
    "detect_cpus",
    "detect_gpus",
    "detect_memory",
    "format_bytes",
    "resolved_spec",
]

_GIB = 1024**3
_CGROUP = Path("/sys/fs/cgroup")
_NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")
_SMI_TIMEOUT = 10.0
DIMENSIONS = ("cpu", "memory", "gpu")


def default_resreq() -> types_pb2.ResourceRequirement:
    """Flame's resreq for a session that gives none: cpu=1, memory=1 GiB, gpu=0 (not accounted)."""
    return types_pb2.ResourceRequirement(cpu=1, memory=_GIB, gpu=0)


def resolved_spec(spec: types_pb2.SessionSpec) -> types_pb2.SessionSpec:
    """``spec`` with Flame's default resreq filled in when it has none (what clients are shown)."""
    if spec.HasField("resreq"):
        return spec
    out = types_pb2.SessionSpec()
    out.CopyFrom(spec)
    out.resreq.CopyFrom(default_resreq())
    return out


def format_bytes(n: int) -> str:
    """``n`` bytes for people: ``23.4 GiB``, ``512 MiB``, ``100 bytes``."""
    for unit, size in (("TiB", 1024**4), ("GiB", _GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if n % size == 0 else f"{value:.1f} {unit}"
    return f"{n} bytes"


# -- capacity ---------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_cpu_limit(root: Path) -> float | None:
    """The cgroup cpu quota in cpus (v2 ``cpu.max``, else v1 CFS quota), or None if unlimited."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota != "max":
            try:
                return int(quota) / int(period or "100000")
            except (ValueError, ZeroDivisionError):
                return None
        return None
    for folder in ("cpu", "cpu,cpuacct"):
        quota_text = _read(root / folder / "cpu.cfs_quota_us")
        period_text = _read(root / folder / "cpu.cfs_period_us")
        if quota_text is None or period_text is None:
            continue
        try:
            quota_us, period_us = int(quota_text), int(period_text)
        except ValueError:
            return None
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def detect_cpus(*, cgroup_root: Path = _CGROUP) -> int:
    """The cpus this process may use: its affinity mask, capped by a cgroup quota (rounded up)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)


def detect_memory(*, cgroup_root: Path = _CGROUP) -> int:
    """Physical memory in bytes, capped by the cgroup memory limit (v2 or v1) when lower."""
    try:
        total = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        total = 0
    for path in (cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"):
        text = _read(path)
        if text is None or not text.isdigit():
            continue  # absent, or "max" (no limit)
        limit = int(text)
        if limit > 0 and (total == 0 or limit < total):
            total = limit
        break
    return total


def _count_nvidia_gpus(proc_dir: Path, smi: str | None) -> int:
    # The driver's folder first: no process to start, and nothing that can hang.
    try:
        return sum(1 for _ in proc_dir.iterdir())
    except OSError:
        pass
    exe = shutil.which(smi) if smi else None
    if exe is None:
        return 0
    try:
        out = subprocess.run(
            [exe, "-L"], capture_output=True, text=True, timeout=_SMI_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    # MIG devices are listed indented under their GPU: count the GPUs only.
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _visible_entries(text: str) -> list[str]:
    """The devices ``CUDA_VISIBLE_DEVICES`` names; CUDA stops at the first invalid entry."""
    out = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        out.append(entry)
    return out


def detect_gpus(
    *,
    env: Mapping[str, str] | None = None,
    proc_dir: Path = _NVIDIA_PROC,
    smi: str | None = "nvidia-smi",
) -> tuple[str, ...]:
    """The NVIDIA devices this process may hand out, as ``CUDA_VISIBLE_DEVICES`` entries.

    Device indices ``0..n-1`` of the devices found; when the runtime itself runs with
    ``CUDA_VISIBLE_DEVICES``, its entries instead (at most as many as devices found, as Ray
    counts them), so instances get ids in the numbering their parent was given.
    """
    found = _count_nvidia_gpus(proc_dir, smi)
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return tuple(str(i) for i in range(found))
    return tuple(_visible_entries(visible)[:found])


@dataclass(frozen=True)
class Capacity:
    """What the machine offers to instances."""

    cpu: int
    """Cpus (whole)."""
    memory: int
    """Bytes."""
    gpus: tuple[str, ...] = ()
    """GPU device ids, as ``CUDA_VISIBLE_DEVICES`` entries."""

    @property
    def gpu(self) -> int:
        """Number of GPUs."""
        return len(self.gpus)

    @classmethod
    def detect(cls) -> Capacity:
        """This machine, as seen by this process (see the module docstring)."""
        return cls(cpu=detect_cpus(), memory=detect_memory(), gpus=detect_gpus())


def _gpus(n: int) -> str:
    return f"{n} GPU" if n == 1 else f"{n} GPUs"


def _cpus(n: int) -> str:
    return f"{n} cpu" if n == 1 else f"{n} cpus"


# -- the ledger -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Allocation:
    """What one instance holds (compared by identity: each is one grant of the ledger)."""

    cpu: int = 0
    memory: int = 0
    gpus: tuple[str, ...] = ()


def _wanted(resreq: types_pb2.ResourceRequirement) -> tuple[int, int, int]:
    # gpu is an int32 on the wire: a negative count means none.
    return int(resreq.cpu), int(resreq.memory), max(int(resreq.gpu), 0)


class Ledger:
    """The machine's capacity and the allocations of live instances; never over-commits."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self._live: set[Allocation] = set()
        self._cpu = 0
        self._memory = 0
        self._free_gpus = list(capacity.gpus)

    @property
    def used(self) -> tuple[int, int, int]:
        """Cpus, bytes and GPUs held by live allocations."""
        return self._cpu, self._memory, self.capacity.gpu - len(self._free_gpus)

    @property
    def free(self) -> tuple[int, int, int]:
        """Cpus, bytes and GPUs not held by anyone."""
        cap = self.capacity
        return cap.cpu - self._cpu, cap.memory - self._memory, len(self._free_gpus)

    def allocations(self) -> list[Allocation]:
        """The live allocations."""
        return list(self._live)

    def shortfall(
        self, resreq: types_pb2.ResourceRequirement, *, plus: Iterable[Allocation] = ()
    ) -> list[str]:
        """The dimensions (``cpu``, ``memory``, ``gpu``) where ``resreq`` exceeds what is free,
        counting the allocations ``plus`` as already returned; empty when it fits."""
        cpu, memory, gpu = self.free
        for a in plus:
            cpu, memory, gpu = cpu + a.cpu, memory + a.memory, gpu + len(a.gpus)
        have = (cpu, memory, gpu)
        wanted = _wanted(resreq)
        return [d for d, want, free in zip(DIMENSIONS, wanted, have, strict=True) if want > free]

    def acquire(self, resreq: types_pb2.ResourceRequirement) -> Allocation | None:
        """Reserve ``resreq`` (GPUs lowest id first), or None when it does not fit now."""
        if self.shortfall(resreq):
            return None
        cpu, memory, gpu = _wanted(resreq)
        gpus = tuple(self._free_gpus[:gpu])
        del self._free_gpus[:gpu]
        self._cpu += cpu
        self._memory += memory
        allocation = Allocation(cpu=cpu, memory=memory, gpus=gpus)
        self._live.add(allocation)
        return allocation

    def release(self, allocation: Allocation) -> None:
        """Return ``allocation``; ValueError when it is not a live one (a double release)."""
        if allocation not in self._live:
            raise ValueError("allocation is not held (released twice?)")
        self._live.remove(allocation)
        self._cpu -= allocation.cpu
        self._memory -= allocation.memory
        order = {g: i for i, g in enumerate(self.capacity.gpus)}
        self._free_gpus = sorted([*self._free_gpus, *allocation.gpus], key=order.__getitem__)

    def never_fits(self, resreq: types_pb2.ResourceRequirement) -> str | None:
        """Why ``resreq`` could not fit even on an idle machine (a message that names what was
        asked and what the machine has, and how to fix it), or None when it can fit."""
        cap = self.capacity
        cpu, memory, gpu = _wanted(resreq)
        asked, has, rest = [], [], []
        for over, want, short, other in (
            (cpu > cap.cpu, f"cpu={cpu}", _cpus(cap.cpu), f"cpu {cap.cpu}"),
            (
                memory > cap.memory,
                f"memory={format_bytes(memory)}",
                f"{format_bytes(cap.memory)} memory",
                f"memory {format_bytes(cap.memory)}",
            ),
            (gpu > cap.gpu, f"gpu={gpu}", _gpus(cap.gpu), _gpus(cap.gpu)),
        ):
            if over:
                asked.append(want)
                has.append(short)
            else:
                rest.append(other)
        if not asked:
            return None
        machine = ", ".join(has) + (f"; {', '.join(rest)}" if rest else "")
        return (
            f"resreq {', '.join(asked)} cannot fit this machine ({machine}): ask for at most "
            "what it has, or give no resreq to reserve nothing"
        )
