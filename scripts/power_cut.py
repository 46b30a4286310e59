"""Cut the power of the x86-64 test machine at random moments of real operations, then check it.

    scripts/power-cut [--cuts 20] [--seed N] [--arch x86_64|arm64] [WORK_DIR]

Builds the test image (scripts/build-test-image, a no-op when nothing changed) and boots one
machine on a fresh overlay of it, with a "USB stick" holding the update Artifact. Then, as many
times as ``--cuts`` says, it picks the operation the device's state allows (install when no
update is pending; commit or rollback while the new system runs its trial; rollback of an update
not booted yet or of an interrupted operation), starts it and cuts the power at a random moment
of it (tests/e2e/powercut.py), powers the machine on and checks: it boots to a shell, pymender
reads the environment and the store, the bootloader booted the partition the environment names,
and a trial is the first boot of a pending update. After a cut that leaves a trial running, a
third of the time the machine is rebooted without a commit: the bootloader must go back to the
fallback, which proves it complete. At the end, the way forward: an install (doing what a
refusal asks), a reboot into the new system and a commit must succeed.

Every cut is printed with its seed's draw; the summary goes to WORK_DIR/power-cut.txt and the
console log to WORK_DIR/console.log. ``--seed`` replays a run. Needs root and ci/install-deps.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the harness lives with the tests that use it

from e2e.conftest import BUILD_DIRS, E2EImage  # noqa: E402
from e2e.guest import mount_stick  # noqa: E402
from e2e.powercut import cut_during, install_way_forward, power_on_and_check, view  # noqa: E402
from e2e.qemu import Machine, MachineConfig, make_fat_disk, overlay_disk  # noqa: E402

STICK = "/mnt/usb1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", nargs="?", type=Path)
    parser.add_argument("--cuts", type=int, default=20)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--arch", default="x86_64", choices=sorted(BUILD_DIRS))
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="pymender-power-cut-"))
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(REPO / "scripts" / "build-test-image"), "--arch", args.arch, str(BUILD_DIRS[args.arch])],
                   check=True)
    image = E2EImage.load(BUILD_DIRS[args.arch])
    payload = int(json.loads((image.directory / "image.json").read_text())["rootfs_size_mb"]) << 20
    rng = random.Random(seed)
    lines = [f"scripts/power-cut --cuts {args.cuts} --seed {seed} --arch {args.arch}"]

    def log(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    log(f"seed {seed}; work directory {workdir}")
    stick = make_fat_disk(workdir / "stick.img", {"release.mender": image.update_artifact})
    disk = overlay_disk(image.disk, workdir / "disk.qcow2")
    started = time.monotonic()
    failures = 0
    with Machine(MachineConfig(disk=disk, arch=image.arch, extra_disks=[stick]), workdir / "console.log") as machine:
        machine.start()
        mount_stick(machine, STICK)
        for number in range(1, args.cuts + 1):
            state = view(machine)
            running = machine.check("findmnt -n -o SOURCE /")
            pending = state.pending
            if pending is None:
                operation = "install"
            elif pending["state"] == "Before_ArtifactCommit_Enter" and pending["partition"] == running:
                operation = rng.choice(["commit", "rollback"])
            else:
                operation = "rollback"
            cut = cut_during(machine, image, operation, rng, artifact=f"{STICK}/release.mender",
                             payload_bytes=payload)
            try:
                after = power_on_and_check(machine, image)
                result = "ok"
            except AssertionError as err:
                failures += 1
                result = f"FAILED: {err}"
                machine.kill()
                machine.start()
                after = view(machine)
            ended = "running" if cut.finished is None else f"had ended with exit {cut.finished}"
            pending_after = after.pending["state"] if after.pending else "none"
            log(f"cut {number:2}: {cut.operation:8} {cut.moment} ({ended}); booted partition "
                f"{machine.booted_partition}, upgrade_available={after.env.get('upgrade_available')}, "
                f"pending: {pending_after}; {result}")
            mount_stick(machine, STICK)
            if after.env.get("upgrade_available") == "1" and rng.random() < 1 / 3:
                trial = machine.booted_partition
                machine.reboot()
                back = machine.booted_partition
                ok = back != trial and view(machine).env.get("upgrade_available") == "0"
                failures += not ok
                log(f"        reboot without a commit: partition {trial} -> {back}: "
                    f"{'ok' if ok else 'FAILED: no rollback'}")
                mount_stick(machine, STICK)
        steps, _ = install_way_forward(machine, f"{STICK}/release.mender")
        machine.reboot()
        code, output = machine.run("pymender commit")
        failures += code != 0
        log(f"way forward: {', '.join(steps)}, reboot into partition {machine.booted_partition}, commit: "
            f"{code} ({'ok' if code == 0 else 'FAILED: ' + output})")
    log(f"{args.cuts} cuts, {failures} failures, {time.monotonic() - started:.0f} s")
    (workdir / "power-cut.txt").write_text("\n".join(lines) + "\n")
    return 1 if failures else 0
