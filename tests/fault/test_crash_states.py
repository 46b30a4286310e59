"""Power cuts, not only kills: every crash state an operation's durable I/O can leave.

Each scenario runs one operation (install, commit, rollback, resume) on a host-simulated device
under the I/O shim (:mod:`fault.iotrace`), builds the states a power cut can leave at each of its
crash points, with the page cache lost (:mod:`fault.crashstates`), and checks each state
(:mod:`fault.crashcheck`): the bootloader, as the layer's scripts behave
(:mod:`fault.bootloaders`), finds its environment and pymender reads the same; the store reads
back; the partition booted, and the fallback of a trial, hold complete systems; a trial is
explained by a pending update; and after a boot, the next install succeeds and a commit after it.

Every crash point is checked, not a sample, on GRUB and on U-Boot. The partitions are small and
the payload is written in 16 KiB blocks (instead of 1 MiB), so that an install makes several
payload writes with crash points between them; the code is the same.
:func:`test_the_checker_catches_a_broken_write_order` shows that the checker fails an updater
that syncs too little or records too late.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from device_sim import SimDevice, release
from fault.crashcheck import PART_SIZE, Release, Report, Scenario, explore, power_on
from pymender.device import flow, store
from pymender.device.bootenv.grub import encode_block
from pymender.device.payloads import rootfs

pytestmark = pytest.mark.timeout(900)

#: Bytes per payload write in these tests (the product's default is 1 MiB).
PAYLOAD_BLOCK = 16 << 10
RELEASE_SIZE = 100_000
#: Random subsets of the unsynced pieces tried at each crash point, besides the systematic ones.
RANDOMS = 16


class Setup(NamedTuple):
    releases: dict[str, Release]
    #: The factory system SimDevice.create puts on rootfs A.
    factory: bytes


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    tmp = tmp_path_factory.mktemp("releases")
    script = tmp / "ArtifactInstall_Enter_01_check"
    script.write_text("#!/bin/sh\nexit 0\n")
    releases = {}
    for name, seed in (("release-2", 2), ("release-3", 3), ("release-4", 4)):
        artifact, image = release(tmp / "artifacts", name, seed=seed, size=RELEASE_SIZE, scripts=[script])
        releases[name] = Release(name, artifact, image)
    probe = SimDevice.create(tmp / "probe", part_size=PART_SIZE)
    return Setup(releases, (probe.root / "factory.img").read_bytes())


def _install(release_: Release) -> Callable[[SimDevice], None]:
    def run(device: SimDevice) -> None:
        code, _, err = device.cli("install", str(release_.artifact))
        assert code == 0, err
    return run


def _steps(*steps: Callable[[SimDevice], None]) -> Callable[[SimDevice], None]:
    def run(device: SimDevice) -> None:
        for step in steps:
            step(device)
    return run


def _commit(device: SimDevice) -> None:
    code, _, err = device.cli("commit")
    assert code == 0, err


def _boot(device: SimDevice) -> None:
    power_on(device)


def _damage_second_copy(device: SimDevice) -> None:
    """The second copy of the environment as a cut of the bootloader's own write left it: GRUB's
    lock marked editing, U-Boot's copy with a bad CRC (and the current copy's flags at 255, so
    the next write wraps them to 0)."""
    if device.bootloader == "grub":
        (device.grub_dir / "mender_grubenv2" / "lock").write_bytes(encode_block({"editing": "1"}))
        return
    first, second = device.root / "uboot-env1", device.root / "uboot-env2"
    blob = bytearray(first.read_bytes())
    blob[4] = 0xFF
    blob[:4] = zlib.crc32(bytes(blob[5:])).to_bytes(4, "little")
    first.write_bytes(bytes(blob))
    second.write_bytes(b"\xff" * len(blob))


def _stopped_install(release_: Release) -> Callable[[SimDevice], None]:
    """``install --stop-before ArtifactInstall_Enter``: the image written, the switch not yet."""
    def run(device: SimDevice) -> None:
        code, _, err = device.cli("install", str(release_.artifact), "--stop-before", "ArtifactInstall_Enter")
        assert code == 0, err
    return run


#: The operations explored, each on GRUB and on U-Boot.
NAMES = ("install", "install-over-a-damaged-copy", "commit", "rollback", "rollback-before-reboot",
         "install-after-ended-trial", "install-over-committed", "resume-stopped-install")


def scenario(setup: Setup, bootloader: str, name: str) -> Scenario:
    r2, r3, r4 = (setup.releases[f"release-{n}"] for n in (2, 3, 4))
    installed = _install(r2)
    prepare, command = {
        "install": (_steps(), ("install", str(r2.artifact))),
        "install-over-a-damaged-copy": (_damage_second_copy, ("install", str(r2.artifact))),
        "commit": (_steps(installed, _boot), ("commit",)),
        "rollback": (_steps(installed, _boot), ("rollback",)),
        "rollback-before-reboot": (installed, ("rollback",)),
        "install-after-ended-trial": (_steps(installed, _boot, _boot), ("install", str(r3.artifact))),
        "install-over-committed": (_steps(installed, _boot, _commit), ("install", str(r3.artifact))),
        "resume-stopped-install": (_stopped_install(r2), ("resume",)),
    }[name]
    complete = {"rootfs-a.img": {setup.factory, r3.image}, "rootfs-b.img": {r2.image, r3.image}}
    return Scenario(f"{bootloader} {name}", bootloader, prepare, command, complete, r4)


def _explore(setup: Setup, bootloader: str, name: str, workdir: Path, **options: int) -> Report:
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(rootfs.write_rootfs.__kwdefaults__, "block_size", PAYLOAD_BLOCK)
        return explore(scenario(setup, bootloader, name), workdir, **options)


@pytest.fixture(scope="module")
def explored(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Report]:
    """The report of one scenario, explored once per test session."""
    reports: dict[tuple[str, str], Report] = {}

    def get(bootloader: str, name: str) -> Report:
        if (bootloader, name) not in reports:
            reports[bootloader, name] = _explore(setup, bootloader, name, tmp_path_factory.mktemp("crash"),
                                                 randoms=RANDOMS)
        return reports[bootloader, name]

    return get


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bootloader", ["grub", "uboot"])
def test_every_crash_state_is_consistent_and_recoverable(
        explored: Callable[[str, str], Report], bootloader: str, name: str) -> None:
    report = explored(bootloader, name)
    assert report.operations > 10 and report.states > 10
    assert not report.problems, "\n".join(map(str, report.problems))


def test_at_least_2000_distinct_crash_states(explored: Callable[[str, str], Report]) -> None:
    reports = [explored(bootloader, name) for bootloader in ("grub", "uboot") for name in NAMES]
    total = sum(report.states for report in reports)
    print("\n".join(f"{r.scenario}: {r.operations} operations, {r.states} crash states" for r in reports))
    print(f"total: {total} distinct crash states")
    assert total >= 2000


# --- the checker itself ---------------------------------------------------------------------------


class _NoPartitionSync:
    """``os`` for the partition writer, whose fsync does nothing (a broken updater)."""

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    @staticmethod
    def fsync(fd: int) -> None:
        return None


def _store_without_fsync(path: Path, data: bytes) -> None:
    """The store's replace, without the fsync of the new file before the rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.close(fd)
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


@pytest.mark.parametrize("mutant", ["partition not synced", "store not synced", "recorded after the switch"])
def test_the_checker_catches_a_broken_write_order(
        setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mutant: str) -> None:
    """Deliberately broken updaters: the checker must report them (so it can fail)."""
    if mutant == "partition not synced":
        monkeypatch.setattr(rootfs, "os", _NoPartitionSync())
        expected = "does not hold a complete system"
    elif mutant == "store not synced":
        monkeypatch.setattr(store, "replace_file", _store_without_fsync)
        expected = "the state store does not read back"
    else:
        # Mender 3.x's order: the pending update is recorded only once the bootloader is switched.
        table = dict(flow.TABLE)
        go = table[flow.S.DOWNLOAD, flow.E.DONE]
        assert isinstance(go, flow.Go)
        table[flow.S.DOWNLOAD, flow.E.DONE] = go._replace(persist=flow.Persist.NOTHING)
        installing = table[flow.S.BEFORE_ARTIFACT_INSTALL_ENTER, flow.E.DONE]
        assert isinstance(installing, flow.Go)
        table[flow.S.BEFORE_ARTIFACT_INSTALL_ENTER, flow.E.DONE] = installing._replace(persist=flow.Persist.NOTHING)
        after = table[flow.S.ARTIFACT_INSTALL_ENTER, flow.E.DONE]
        assert isinstance(after, flow.Go)
        table[flow.S.ARTIFACT_INSTALL_ENTER, flow.E.DONE] = after._replace(persist=flow.Persist.BEGIN)
        monkeypatch.setattr(flow, "TABLE", table)
        expected = "is on trial, but the store has no pending update"
    report = _explore(setup, "grub", "install", tmp_path, randoms=2, limit=1)
    assert report.problems, f"the checker did not notice: {mutant}"
    assert expected in report.problems[0].what, report.problems[0]

