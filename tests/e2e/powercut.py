"""Power cuts at random moments of real operations on a booted test machine, and the checks after.

:func:`cut_during` starts ``pymender install``, ``commit`` or ``rollback`` in the guest and cuts
the power (QEMU killed: what the guest had not flushed is lost) at a moment drawn from a seeded
random generator: for an install, when a random amount of the payload has reached the inactive
partition, or a random instant after the whole payload was written (the bootloader switch and
the store writes happen then); for commit and rollback, a random instant after the start.
:func:`power_on_and_check` powers the machine on and checks what every power cut must leave:

1. the machine boots to a shell (the partition the bootloader booted holds a complete system);
2. pymender reads the bootloader environment and the state store;
3. the bootloader booted the partition the environment names;
4. a trial (``upgrade_available=1``) is the first boot of a pending update of that partition.

:func:`install_way_forward` is the documented way on: ``install``, doing what a refusal asks (a
commit of the system on trial, the end of an interrupted commit, a reboot). The fallback of a
trial is proven complete by booting it: a reboot without a commit rolls back to it.
Used by ``scripts/power-cut`` (20 cuts, on demand) and by ``test_standalone.py`` (one per run).
"""

from __future__ import annotations

import json
import random
import shlex
import time
from typing import NamedTuple

from e2e.conftest import E2EImage
from e2e.qemu import Machine

#: How long a commit or rollback takes under emulation (seconds), the range a cut is drawn from.
SHORT_OPERATION = 4.0
#: Seconds after the payload was written in which an install's cut may fall.
INSTALL_TAIL = 4.0
INSTALL_TIMEOUT = 1200.0

_VIEW = (
    "import json; from pymender.device.config import load_config; "
    "from pymender.device.bootenv import open_bootenv; from pymender.device.store import StateStore; "
    "c = load_config(None); s = StateStore(c.data_dir, artifact_info=c.artifact_info_file); "
    "p = s.pending(); print(json.dumps({'env': open_bootenv(None).read(), 'current': s.current().artifact_name, "
    "'pending': None if p is None else {'state': p.state, 'partition': p.partition, 'name': p.artifact_name}}))"
)


class View(NamedTuple):
    """The device as pymender reads it."""

    env: dict[str, str]
    current: str
    pending: dict[str, str] | None


class Cut(NamedTuple):
    operation: str
    #: Where the power went: "after 123 MiB of the payload", "1.8 s after the start", ...
    moment: str
    #: Whether the operation had ended (and how) before the cut; None: still running.
    finished: int | None


def view(machine: Machine) -> View:
    data = json.loads(machine.check(f"python3 -c {shlex.quote(_VIEW)}"))
    return View(data["env"], data["current"], data["pending"])


def _sectors(machine: Machine, device: str) -> int:
    return int(machine.check(f"awk '{{print $7}}' /sys/class/block/{device.rsplit('/', 1)[-1]}/stat"))


def _finished(machine: Machine) -> int | None:
    code, output = machine.run("cat /run/op.rc 2>/dev/null")
    return int(output) if code == 0 and output.strip().isdigit() else None


def cut_during(machine: Machine, image: E2EImage, operation: str, rng: random.Random, *,
               artifact: str = "", payload_bytes: int = 0) -> Cut:
    """Start ``pymender OPERATION`` in the background and cut the power at a random moment."""
    command = f"pymender {operation} --no-progress {shlex.quote(artifact)}" if operation == "install" \
        else f"pymender {operation}"
    if operation == "install":
        target = inactive_partition(machine, image)
        start = _sectors(machine, target)
    machine.check("rm -f /run/op.rc; sync")
    machine.check(f"({command} </dev/null >/root/op.log 2>&1; echo $? >/run/op.rc) & echo $! >/run/op.pid")
    if operation == "install" and rng.random() < 0.75:
        fraction = rng.random()
        threshold = start + int(payload_bytes * fraction) // 512
        machine.check(f"(while [ $(awk '{{print $7}}' /sys/class/block/{target.rsplit('/', 1)[-1]}/stat) "
                      f"-lt {threshold} ]; do [ -e /run/op.rc ] && exit 0; sleep 0.1; done)", timeout=INSTALL_TIMEOUT)
        moment = f"after {fraction:.0%} of the payload ({payload_bytes * fraction / (1 << 20):.0f} MiB)"
    else:
        if operation == "install":
            end = start + payload_bytes // 512
            machine.check(f"(while [ $(awk '{{print $7}}' /sys/class/block/{target.rsplit('/', 1)[-1]}/stat) "
                          f"-lt {end} ]; do [ -e /run/op.rc ] && exit 0; sleep 0.1; done)", timeout=INSTALL_TIMEOUT)
            delay = rng.uniform(0.0, INSTALL_TAIL)
            moment = f"{delay:.1f} s after the whole payload was written"
        else:
            delay = rng.uniform(0.0, SHORT_OPERATION)
            moment = f"{delay:.1f} s after the start"
        time.sleep(delay)
    finished = _finished(machine)
    machine.kill()
    return Cut(operation, moment, finished)


def inactive_partition(machine: Machine, image: E2EImage) -> str:
    running = machine.check("findmnt -n -o SOURCE /")
    a, b = image.partitions["rootfs_a"], image.partitions["rootfs_b"]
    return b if running == a else a


def power_on_and_check(machine: Machine, image: E2EImage) -> View:
    """Power on after a cut and check invariants 1-4 (see the module docstring)."""
    machine.start()
    booted = machine.booted_partition
    assert booted is not None, "the boot script did not say which partition it booted"
    current = view(machine)
    env = current.env
    assert env.get("mender_boot_part") == str(booted), (booted, env)
    running = machine.check("findmnt -n -o SOURCE /")
    assert running.endswith(str(booted)), (running, booted)
    release = machine.check(f"cat {shlex.quote(image.marker_file)}")
    assert release in (image.factory_release, image.update_release), release
    if env.get("upgrade_available") == "1":
        assert env.get("bootcount") == "1", env
        assert current.pending is not None and current.pending["partition"] == running, current
    return current


def install_way_forward(machine: Machine, artifact: str) -> tuple[list[str], str]:
    """``install``, doing what a refusal asks, until it succeeds; the steps and its output."""
    steps: list[str] = []
    for _ in range(4):
        code, output = machine.run(f"pymender install --no-progress {shlex.quote(artifact)}",
                                   timeout=INSTALL_TIMEOUT)
        steps.append(f"install: {code}")
        if code == 0:
            return steps, output
        if "waiting for a commit" in output:
            code, said = machine.run("pymender commit")
            steps.append(f"commit: {code}")
            assert code == 0, said
        elif "was interrupted" in output and "run 'pymender commit'" in output:
            code, said = machine.run("pymender commit")
            steps.append(f"commit: {code}")
            assert code == 0 or "did not stay up" in said, said
        elif "reboot first" in output:
            machine.reboot()
            steps.append(f"reboot: partition {machine.booted_partition}")
        else:
            raise AssertionError(f"install refused: {output} ({steps})")
    raise AssertionError(f"install never succeeded ({steps})")


__all__ = ["Cut", "View", "cut_during", "inactive_partition", "install_way_forward", "power_on_and_check", "view"]
