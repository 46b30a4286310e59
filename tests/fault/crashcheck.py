"""Trace an operation on a host-simulated device, then check every crash state it can leave.

:func:`trace` runs one device command (install, commit, rollback) in-process under the
:mod:`fault.iotrace` shim. :func:`explore` builds the crash states (:mod:`fault.crashstates`)
and checks each one, on a fresh copy of the device's files:

1. the bootloader (modelled by :mod:`fault.bootloaders` from the layer's scripts) finds a usable
   copy of its environment, and pymender's backend reads the same variables from it;
2. the state store reads back;
3. the partition the bootloader boots holds a complete system, and while an update is on trial
   the fallback does too;
4. a trial is explained by a pending update of that partition;
5. the way forward works: the device boots (the bootloader's writes applied), then ``install``
   succeeds (after the one step a refusal names: a commit, an interrupted commit finished, or a
   reboot), the next boot tries the new system, and ``commit`` succeeds.

Operations not under test run with :func:`fault.iotrace.no_sync`: their durability is not
what is checked, and the states are many.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from device_sim import UBOOT_ENV_SIZE, SimDevice
from fault.bootloaders import Boot, grub_boot, uboot_boot
from fault.crashstates import CrashState, Trace, crash_states
from fault.iotrace import Recorder, no_sync
from pymender.errors import PymenderError

#: The four shared variables; upgrade_available and bootcount read as 0 when missing.
SHARED = ("mender_boot_part", "upgrade_available", "bootcount")
UBOOT_FILES = ("uboot-env1", "uboot-env2")
SHM = Path("/dev/shm")


class Release(NamedTuple):
    name: str
    artifact: Path
    image: bytes


class Problem(NamedTuple):
    operation: str
    state: CrashState
    what: str

    def __str__(self) -> str:
        return f"{self.operation}: crash point {self.state.point} ({self.state.how}): {self.what}"


class Found(Exception):
    """A broken invariant in one crash state."""


# --- the bootloader, played by the model ---------------------------------------------------------


def env_files(device: SimDevice) -> dict[str, bytes | None]:
    if device.bootloader == "grub":
        return {f"mender_grubenv{c}/{n}": _read(device.grub_dir / f"mender_grubenv{c}" / n)
                for c in (1, 2) for n in ("env", "lock", "lock.sha256sum")}
    return {name: _read(device.root / name) for name in UBOOT_FILES}


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def bootloader(device: SimDevice) -> Boot:
    """What the bootloader does on the next power-on (nothing written yet)."""
    files = env_files(device)
    if device.bootloader == "grub":
        return grub_boot(files)
    return uboot_boot(files, UBOOT_ENV_SIZE, names=UBOOT_FILES)


def power_on(device: SimDevice) -> Boot:
    """Boot: the bootloader's writes reach the files, the chosen partition becomes the root."""
    boot = bootloader(device)
    base = device.grub_dir if device.bootloader == "grub" else device.root
    for name, content in boot.writes.items():
        (base / name).write_bytes(content)
    device.write_config(device.partition(boot.partition))
    return boot


# --- checking one state --------------------------------------------------------------------------


def check_consistent(device: SimDevice, complete: dict[str, set[bytes]]) -> Boot:
    """Invariants 1-4 on the device as the power cut left it; the bootloader's next boot."""
    boot = bootloader(device)
    if boot.source is None:
        raise Found("the bootloader finds no usable copy of its environment")
    try:
        env = device.read_env()
    except PymenderError as err:
        raise Found(f"pymender cannot read the environment the bootloader boots from: {err}") from None
    ours = {name: env.get(name, "0" if name != "mender_boot_part" else "") for name in SHARED}
    theirs = {name: boot.found.get(name, "") for name in SHARED}
    if ours != theirs:
        raise Found(f"pymender reads {ours}, the bootloader {theirs}")
    try:
        store = device.store()
        pending = store.pending()
        store.current()
    except PymenderError as err:
        raise Found(f"the state store does not read back: {err}") from None
    booted = device.partition(boot.partition)
    if not _complete(booted, complete):
        raise Found(f"the bootloader boots {booted.name}, which does not hold a complete system")
    if boot.found.get("upgrade_available") == "1":
        trial = device.partition(boot.found["mender_boot_part"])
        fallback = device.part_a if trial == device.part_b else device.part_b
        if not _complete(fallback, complete):
            raise Found(f"{trial.name} is on trial but the fallback {fallback.name} is incomplete")
        if pending is None or pending.partition != str(trial):
            raise Found(f"{trial.name} is on trial, but the store has "
                        f"{'no pending update' if pending is None else 'a pending update of ' + pending.partition}")
    return boot


def _complete(partition: Path, complete: dict[str, set[bytes]]) -> bool:
    data = partition.read_bytes()
    return any(data.startswith(image) for image in complete.get(partition.name, set()))


def way_forward(device: SimDevice, release: Release) -> list[str]:
    """Invariant 5: power on, install ``release`` (doing what a refusal asks), boot, commit."""
    steps = [f"boot {power_on(device).partition}"]
    for _ in range(3):
        code, _, err = device.cli("install", str(release.artifact))
        steps.append(f"install: {code}")
        if code == 0:
            break
        if "waiting for a commit" in err:
            code, _, err2 = device.cli("commit")
            steps.append(f"commit: {code}")
            if code != 0:
                raise Found(f"install said to commit, and commit failed: {err2.strip()} ({steps})")
        elif "was interrupted" in err and "commit" in err.split(":", 2)[-1] and "run 'pymender commit'" in err:
            code, _, err2 = device.cli("commit")
            steps.append(f"commit: {code}")
            if code != 0 and "did not stay up" not in err2:
                raise Found(f"finishing the interrupted commit failed: {err2.strip()} ({steps})")
        elif "reboot first" in err:
            steps.append(f"boot {power_on(device).partition}")
        else:
            raise Found(f"install refused: {err.strip()} ({steps})")
    else:
        raise Found(f"install never succeeded ({steps})")
    pending = device.store().pending()
    if pending is None:
        raise Found(f"install recorded no pending update ({steps})")
    boot = power_on(device)
    if device.partition(boot.partition) != Path(pending.partition) or not boot.trial:
        raise Found(f"the boot after the install did not try {pending.partition} ({steps}, {boot})")
    code, _, err = device.cli("commit")
    if code != 0:
        raise Found(f"commit after the install failed: {err.strip()} ({steps})")
    if device.cli("show-artifact")[1].strip() != release.name:
        raise Found(f"after the commit, show-artifact does not say {release.name}")
    return steps


# --- tracing and exploring -----------------------------------------------------------------------


def trace(device: SimDevice, *args: str) -> tuple[Trace, tuple[int, str, str]]:
    """Run ``pymender ARGS`` on ``device`` in-process, recording its durable I/O."""
    recorder = Recorder(device.root)
    snapshot = recorder.snapshot()
    with recorder.recording():
        result = device.cli(*args)
    return Trace(snapshot, dict(recorder.initial_inodes), list(recorder.ops)), result


def crash_states_of(root: Path, action: Callable[[], object], **options: int) -> list[CrashState]:
    """The distinct crash states ``action`` can leave on the files under ``root``."""
    recorder = Recorder(root)
    snapshot = recorder.snapshot()
    with recorder.recording():
        action()
    return list(crash_states(Trace(snapshot, dict(recorder.initial_inodes), list(recorder.ops)), **options))


class Scenario(NamedTuple):
    """One operation to explore: how to prepare the device, the command, what counts as a
    complete system on each partition, and the Artifact the way forward installs."""

    name: str
    bootloader: str
    prepare: Callable[[SimDevice], None]
    command: tuple[str, ...]
    complete: dict[str, set[bytes]]
    next_release: Release


class Report(NamedTuple):
    scenario: str
    operations: int
    states: int
    problems: list[Problem]


def explore(scenario: Scenario, workdir: Path, *, randoms: int = 6, limit: int = 20) -> Report:
    """Trace the scenario's command and check every crash state; at most ``limit`` problems.

    The device lives in memory (``/dev/shm``) when the machine has it: each state is written out
    whole, and thousands of them are."""
    with _scratch(workdir) as where:
        return _explore(scenario, where, randoms=randoms, limit=limit)


@contextlib.contextmanager
def _scratch(workdir: Path) -> Iterator[Path]:
    if not SHM.is_dir() or not os.access(SHM, os.W_OK):
        yield workdir
        return
    where = Path(tempfile.mkdtemp(prefix="pymender-crash-", dir=SHM))
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _explore(scenario: Scenario, workdir: Path, *, randoms: int, limit: int) -> Report:
    device = SimDevice.create(workdir / "device", bootloader=scenario.bootloader, part_size=PART_SIZE)
    with no_sync():
        scenario.prepare(device)
    recorded, (code, _, err) = trace(device, *scenario.command)
    if code != 0:
        raise AssertionError(f"{scenario.name}: the traced command failed: {err}")
    problems: list[Problem] = []
    count = 0
    for state in crash_states(recorded, randoms=randoms):
        count += 1
        problem = check_state(scenario, state, device.root)
        if problem is not None:
            problems.append(Problem(scenario.name, state, problem))
            if len(problems) >= limit:
                break
    return Report(scenario.name, len(recorded.ops), count, problems)


def check_state(scenario: Scenario, state: CrashState, root: Path) -> str | None:
    """The first broken invariant of ``state`` (None: all hold), materialized in ``root``: where
    the traced device was, since its configuration and store name its files by path."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    state.disk.materialize(root)
    device = SimDevice(root, scenario.bootloader)
    try:
        check_consistent(device, scenario.complete)
        with no_sync():
            way_forward(device, scenario.next_release)
    except Found as found:
        return str(found)
    return None


#: Size of each simulated root filesystem partition.
PART_SIZE = 256 << 10


__all__ = ["PART_SIZE", "Found", "Problem", "Release", "Report", "Scenario", "bootloader", "check_consistent",
           "check_state", "crash_states_of", "explore", "power_on", "trace", "way_forward"]
