"""The GPUs this machine may hand out to replicas, and which replica holds which. The local backend
gives a GPU replica whole devices, named by CUDA index through ``CUDA_VISIBLE_DEVICES`` (an empty
value for a CPU replica, so that it sees none). Devices come from ``Settings.gpus`` when set,
otherwise from NVML (``pynvml``) or ``nvidia-smi``; a machine with neither has none, and a plan
that asks for a GPU is refused there rather than run on the CPU. ``nvidia-smi`` numbers devices in
PCI bus order: replicas should run with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA numbers them
the same way. Detection can take seconds (``nvidia-smi`` with a slow driver): an inventory made by
``detecting`` runs it once, in a thread, the first time ``ready`` is awaited, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterable, Mapping

from zeroserve.errors import Unschedulable

NVIDIA_SMI_TIMEOUT_S = 5.0


class GpuInventory:
    def __init__(self, devices: Iterable[int], names: Mapping[int, str] | None = None) -> None:
        self.devices: list[int] = list(dict.fromkeys(devices))
        self.names: dict[int, str] = dict(names or {})
        self._holders: dict[int, str] = {}
        # Held while the devices are not detected yet (``detecting``); None once they are known.
        self._undetected: asyncio.Lock | None = None

    @classmethod
    def detecting(cls) -> GpuInventory:
        """An inventory whose devices ``ready`` detects, once, in a thread."""
        inventory = cls([])
        inventory._undetected = asyncio.Lock()
        return inventory

    async def ready(self) -> None:
        """Detect the devices, off the event loop, unless they are known already."""
        undetected = self._undetected
        if undetected is None:
            return
        async with undetected:
            if self._undetected is None:  # another caller detected them meanwhile
                return
            found = await asyncio.to_thread(self.detect)
            self.devices, self.names = found.devices, found.names
            self._undetected = None

    @classmethod
    def detect(cls) -> GpuInventory:
        """The GPUs NVML or ``nvidia-smi`` report; none if neither can tell. Never raises.

        Blocks for up to ``NVIDIA_SMI_TIMEOUT_S``: call it from a thread, once, at start-up.
        """
        names = _nvml_devices()
        if names is None:
            names = _nvidia_smi_devices()
        return cls(sorted(names or {}), names)

    @property
    def total(self) -> int:
        return len(self.devices)

    @property
    def free(self) -> int:
        return len(self.devices) - len(self._holders)

    def held_by(self, owner: str) -> list[int]:
        return [index for index, holder in self._holders.items() if holder == owner]

    def allocate(self, owner: str, count: int) -> list[int]:
        """Give ``owner`` ``count`` free devices (lowest indices first), or raise ``Unschedulable``."""
        if count < 0:
            raise ValueError(f"cannot allocate {count} GPUs")
        free = [index for index in self.devices if index not in self._holders]
        if count > len(free):
            raise Unschedulable(
                f"{owner} needs {count} GPU{'s' if count != 1 else ''}; "
                f"{len(free)} of {self.total} free on this machine"
            )
        granted = free[:count]
        for index in granted:
            self._holders[index] = owner
        return granted

    def release(self, owner: str) -> list[int]:
        """Take back every device ``owner`` holds; returns them (none is fine)."""
        released = self.held_by(owner)
        for index in released:
            del self._holders[index]
        return released

    @staticmethod
    def cuda_visible_devices(indices: Iterable[int]) -> str:
        """The ``CUDA_VISIBLE_DEVICES`` value for ``indices``; "" hides every GPU."""
        return ",".join(str(index) for index in indices)

    def __repr__(self) -> str:
        return f"GpuInventory(devices={self.devices!r}, held={self._holders!r})"


def _nvml_devices() -> dict[int, str] | None:
    """Index -> name from NVML; None when pynvml is missing or NVML cannot start (no driver)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        names = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
            names[index] = name.decode() if isinstance(name, bytes) else str(name)
        return names
    except pynvml.NVMLError:
        return None
    finally:
        with contextlib.suppress(pynvml.NVMLError):  # the devices are read: nothing is lost
            pynvml.nvmlShutdown()


def _nvidia_smi_devices() -> dict[int, str] | None:
    """Index -> name from ``nvidia-smi``; None when it is not on PATH, fails or hangs."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        process = subprocess.Popen(
            [executable, "--query-gpu=index,name", "--format=csv,noheader"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            encoding="utf-8",
            errors="replace",
        )
    except OSError:
        return None
    try:
        stdout, _ = process.communicate(timeout=NVIDIA_SMI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # A wedged driver can leave nvidia-smi unkillable (state D): waiting for it could hang too.
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1)
        return None
    if process.returncode != 0:
        return None
    names = {}
    for line in stdout.splitlines():
        index, _, name = line.partition(",")
        if index.strip().isdigit():
            names[int(index)] = name.strip()
    return names
