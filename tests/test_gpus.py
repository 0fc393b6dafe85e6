"""Which GPUs a replica gets: the bookkeeping of an inventory, and detection on this machine.

The build machines have no GPU: detection is tried for real (it finds none), and the
``nvidia-smi`` path is exercised with stand-in executables that print what nvidia-smi prints.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from zeroserve.errors import Unschedulable
from zeroserve.serving import gpus
from zeroserve.serving.gpus import GpuInventory


def test_allocation_hands_out_lowest_free_devices_until_released():
    inventory = GpuInventory([0, 1, 2, 3])
    assert (inventory.total, inventory.free) == (4, 4)

    assert inventory.allocate("deployment-a/replica-1", 2) == [0, 1]
    assert inventory.allocate("deployment-b/replica-1", 1) == [2]
    assert (inventory.total, inventory.free) == (4, 1)

    assert inventory.release("deployment-a/replica-1") == [0, 1]
    assert inventory.free == 3
    assert inventory.allocate("deployment-c/replica-1", 3) == [0, 1, 3]
    assert inventory.held_by("deployment-b/replica-1") == [2]


def test_exhausted_inventory_is_unschedulable_and_changes_nothing():
    inventory = GpuInventory([0, 1])
    inventory.allocate("a", 1)

    with pytest.raises(Unschedulable) as failure:
        inventory.allocate("b", 2)
    assert failure.value.reason == "Unschedulable"
    assert "b needs 2 GPUs; 1 of 2 free" in str(failure.value)
    assert inventory.free == 1
    assert inventory.held_by("b") == []


def test_cpu_replicas_need_no_gpu_even_on_a_machine_without_any():
    inventory = GpuInventory([])
    assert inventory.allocate("cpu-replica", 0) == []
    with pytest.raises(Unschedulable):
        inventory.allocate("gpu-replica", 1)
    assert inventory.release("never-allocated") == []


def test_injected_devices_keep_their_indices():
    inventory = GpuInventory([2, 3, 2])
    assert inventory.total == 2
    assert inventory.allocate("a", 2) == [2, 3]


def test_cuda_visible_devices_names_exactly_the_allocated_devices():
    assert GpuInventory.cuda_visible_devices([]) == ""
    assert GpuInventory.cuda_visible_devices([1]) == "1"
    inventory = GpuInventory([0, 1, 2])
    assert inventory.cuda_visible_devices(inventory.allocate("a", 2)) == "0,1"


def test_detect_on_this_machine_finds_no_gpu_without_raising():
    if shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists():
        pytest.skip("this machine has an NVIDIA driver: detection may rightly find GPUs")
    inventory = GpuInventory.detect()
    assert (inventory.total, inventory.free) == (0, 0)


def _fake_nvidia_smi(directory: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    executable = directory / "nvidia-smi"
    executable.write_text("#!/bin/sh\n" + script)
    executable.chmod(executable.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(gpus, "_nvml_devices", lambda: None)


def test_detect_reads_index_and_name_from_nvidia_smi(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, "printf '0, Tesla T4\\n1, Tesla V100-SXM2-16GB\\n'\n", monkeypatch)
    inventory = GpuInventory.detect()
    assert inventory.devices == [0, 1]
    assert inventory.names == {0: "Tesla T4", 1: "Tesla V100-SXM2-16GB"}


def test_detect_finds_none_when_nvidia_smi_fails(tmp_path, monkeypatch):
    _fake_nvidia_smi(
        tmp_path,
        "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n",
        monkeypatch,
    )
    assert GpuInventory.detect().total == 0


def test_detect_gives_up_on_a_hanging_nvidia_smi(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, "exec sleep 30\n", monkeypatch)
    monkeypatch.setattr(gpus, "NVIDIA_SMI_TIMEOUT_S", 0.3)
    started = time.monotonic()
    assert GpuInventory.detect().total == 0
    assert 0.3 <= time.monotonic() - started < 5


async def test_a_detecting_inventory_finds_its_devices_in_a_thread_while_the_loop_runs(tmp_path, monkeypatch):
    # nvidia-smi answers only once the event loop has written a file: detection on the loop would hang
    # for its timeout and find nothing.
    flag = tmp_path / "loop-ran"
    _fake_nvidia_smi(tmp_path, f"while [ ! -e {flag} ]; do sleep 0.01; done\nprintf '0, Tesla T4\\n'\n", monkeypatch)
    inventory = GpuInventory.detecting()
    assert inventory.total == 0
    detection = asyncio.create_task(inventory.ready())
    await asyncio.sleep(0.05)
    flag.touch()
    await asyncio.gather(detection, inventory.ready())
    assert inventory.devices == [0] and inventory.names == {0: "Tesla T4"}
    assert inventory.allocate("a", 1) == [0]
