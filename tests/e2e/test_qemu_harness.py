"""The harness's power handling, against a stand-in for QEMU (no emulator, a few seconds).

QEMU runs with ``-no-reboot``, so every reset ends its process and :class:`Machine` powers on
again. The stand-in prints what a boot prints, runs the harness's shell lines with ``sh``, and on
``reboot`` does what the test asks: reset (exit 0), print the kernel's last message and then
hang (the emulated reset that never happens), or fail (exit non-zero). ``reboot-soon`` is the
guest rebooting by itself a moment later (a daemon's reboot), while the harness only watches.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from e2e import qemu
from e2e.qemu import Machine, MachineConfig, MachineError

FAKE_QEMU = r'''
import os, subprocess, sys, threading, time
from pathlib import Path
counter = Path(os.environ["FAKE_QEMU_BOOTS"])
boots = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(boots))
# Boots alternate between partitions 2 and 3, so each boot is told apart.
print(f"pymender: booting partition {2 + (boots + 1) % 2}", flush=True)
print("root@fake:~# ", end="", flush=True)
last = 0
for line in sys.stdin:
    line = line.rstrip("\n")
    if line == "reboot":
        mode = os.environ["FAKE_QEMU_REBOOT"]
        if mode == "fail":
            sys.exit(3)
        print("[   54.5] reboot: Restarting system", flush=True)
        if mode == "hang":
            time.sleep(3600)
        sys.exit(0)
    if line == "reboot-soon":
        def reset():
            time.sleep(0.5)
            print("[   60.1] reboot: Restarting system", flush=True)
            os._exit(0)
        threading.Thread(target=reset, daemon=True).start()
        continue
    if line.startswith("stty "):
        continue
    if line.startswith("__rc="):
        subprocess.run(["sh", "-c", f"(exit {last}); {line}"])
        sys.stdout.flush()
        continue
    last = subprocess.run(["sh", "-c", line]).returncode
'''


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    script = tmp_path / "fake-qemu"
    script.write_text(f"#!{sys.executable}\n{FAKE_QEMU}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setitem(qemu.QEMU_BINARIES, "x86_64", str(script))
    monkeypatch.setattr(qemu, "RESET_GRACE", 1.0)
    monkeypatch.setattr(qemu, "ovmf_code", lambda: tmp_path / "OVMF_CODE.fd")
    monkeypatch.setattr(qemu, "ovmf_vars_template", lambda code: script)
    monkeypatch.setenv("FAKE_QEMU_BOOTS", str(tmp_path / "boots"))
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 512)
    return Machine(MachineConfig(disk=disk, kvm=False, boot_timeout=20.0),
                   tmp_path / "console.log")


def test_reset_ends_qemu_and_the_harness_powers_on_again(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_REBOOT", "reset")
    with machine:
        machine.start()
        assert machine.booted_partition == 2
        assert "-no-reboot" in machine.command_line()
        log = machine.reboot()
        assert "booting partition 2" not in log  # from the reboot on, not the first boot
        assert "booting partition 3" in log
        assert machine.booted_partition == 3
        assert (machine.boots, machine.resets) == (2, 1)
        assert machine.check("echo still driven") == "still driven"
        assert machine.run("exit 7") == (7, "")
    assert "reset (QEMU exits on a reset" in machine.log_path.read_text()


def test_a_reboot_the_guest_starts_by_itself_is_waited_for(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_REBOOT", "reset")
    with machine:
        machine.start()
        assert machine.run("reboot-soon") == (0, "")
        log = machine.wait_for_reboot(timeout=10.0)
        assert "booting partition 3" in log and "booting partition 2" not in log
        assert (machine.boots, machine.resets, machine.booted_partition) == (2, 1, 3)
        assert machine.check("echo driven again") == "driven again"
        with pytest.raises(MachineError, match="timed out waiting for the guest to reset"):
            machine.wait_for_reboot(timeout=1.0)  # nothing reboots it this time
    assert "waiting for the guest to reboot by itself" in machine.log_path.read_text()


def test_a_reset_that_never_happens_becomes_a_logged_power_cut(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_REBOOT", "hang")
    with machine:
        machine.start()
        machine.reboot()
        assert machine.booted_partition == 3
        assert (machine.boots, machine.resets) == (2, 0)
    log = machine.log_path.read_text()
    assert "no reset 1 s after the kernel's last message: power cut" in log


def test_qemu_failing_is_an_error_not_a_reset(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_QEMU_REBOOT", "fail")
    with machine:
        machine.start()
        with pytest.raises(MachineError, match="QEMU exited with status 3"):
            machine.reboot()
        assert not machine.running

