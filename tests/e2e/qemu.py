"""Drive a QEMU machine over its serial console, for the end-to-end tests.

Two machines, one per test image: ``x86_64`` (q35 with UEFI firmware, OVMF, which starts GRUB)
and ``arm64`` (the virt machine with Debian's U-Boot build as its firmware, which runs the boot
script from the boot partition). A :class:`Machine` boots a disk image, waits for the root shell
that the test image logs in automatically on the first serial port, runs shell commands and
reads their exit codes, reboots, powers off, or cuts the power (kills QEMU). Every byte of the
console goes to a log file, so a failed test can be read boot by boot.

QEMU runs with ``-no-reboot``: a reset (``reboot`` in Linux, GRUB's ``reboot``, U-Boot's ``reset``)
ends the QEMU process, and the harness powers the same disks on again with a new one. A reset is
then the same every time, on both machines: the emulated firmware never has to carry a warm reset
through (under TCG, OVMF has been seen to hang for good after one).

KVM is used only for x86-64 and only when a short probe shows that it really runs guest code
(``/dev/kvm`` can exist and still hang or fail in nested setups); otherwise QEMU emulates the CPU
(TCG), which is slower but works everywhere. ``PYMENDER_E2E_ACCEL=kvm|tcg`` overrides the probe.
arm64 always runs under TCG on an x86-64 host.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pexpect

from helpers import REPO, load_script

#: The machines: the test image's architecture name -> its QEMU.
QEMU_BINARIES = {"x86_64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
#: The same machines by their oe-core names (the layer's QEMU script knows them so).
OE_MACHINES = {"x86_64": "qemux86-64", "arm64": "qemuarm64"}
QEMU = QEMU_BINARIES["x86_64"]
#: Debian's U-Boot for QEMU's arm64 virt machine (package u-boot-qemu): distro boot, virtio.
UBOOT_ARM64 = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
OVMF_CODE_CANDIDATES = (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_CODE.fd"))
#: Where the guest reaches the host's loopback in QEMU's user-mode network (``host_access``).
HOST_ADDRESS = "10.0.2.2"
#: The test image's shell prompt once the automatic root login is done.
SHELL_PROMPT = re.compile(r"root@[\w.-]+:[^\r\n#$]*# ")
#: What the boot script (GRUB's or U-Boot's) prints when it hands over to the kernel (group 1:
#: partition number).
BOOTING_PARTITION = re.compile(r"pymender: booting partition (\d+)")
#: What Linux prints last before it resets the machine.
KERNEL_RESTARTING = re.compile(r"reboot: Restarting system")
#: Seconds from the kernel's last message to the reset (QEMU's exit) before the harness cuts the
#: power itself: the guest has finished, only the emulated reset is missing.
RESET_GRACE = 30.0
_RC_MARK = "@@PMRC"


#: meta-pymender's scripts/pymender-qemu, which boots a build's disk image: the harness starts
#: its machines with the same board, firmware and disk options.
RUN_SCRIPT = load_script(REPO / "meta-pymender" / "scripts" / "pymender-qemu", "pymender_qemu")


class MachineError(Exception):
    """The machine did not do what was expected (no shell, a command hung, QEMU died)."""


@functools.lru_cache(maxsize=1)
def kvm_usable() -> bool:
    """True when KVM runs the UEFI firmware here; else the machines use TCG.

    ``/dev/kvm`` can exist and still fail in nested setups: QEMU may not start, or stop with an
    emulation failure inside OVMF while a plain BIOS runs. So the probe boots OVMF itself with
    no disk and waits (15 s at most) for its boot manager to speak on the serial console.
    """
    forced = os.environ.get("PYMENDER_E2E_ACCEL")
    if forced:
        return forced == "kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or shutil.which(QEMU) is None:
        return False
    code = ovmf_code()
    with tempfile.TemporaryDirectory() as tmp:
        variables = Path(tmp) / "OVMF_VARS.fd"
        shutil.copyfile(ovmf_vars_template(code), variables)
        probe = pexpect.spawn(
            QEMU,
            ["-accel", "kvm", "-M", "q35", "-nodefaults", "-display", "none", "-monitor", "none",
             "-serial", "stdio", "-net", "none",
             "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
             "-drive", f"if=pflash,format=raw,unit=1,file={variables}"],
            encoding="utf-8", codec_errors="replace", timeout=15,
        )
        try:
            index: int = probe.expect(["BdsDxe", "KVM internal error", pexpect.EOF, pexpect.TIMEOUT])
        finally:
            probe.close(force=True)
    return index == 0


def uboot_arm64() -> Path:
    if not UBOOT_ARM64.exists():
        raise MachineError(f"{UBOOT_ARM64} is missing (Debian package u-boot-qemu)")
    return UBOOT_ARM64


def ovmf_code() -> Path:
    for candidate in OVMF_CODE_CANDIDATES:
        if candidate.exists():
            return candidate
    raise MachineError("OVMF is not installed (Debian package ovmf)")


def ovmf_vars_template(code: Path) -> Path:
    return code.with_name(code.name.replace("CODE", "VARS"))


def overlay_disk(base: Path, overlay: Path, extra_mb: int = 0) -> Path:
    """A fresh writable disk on top of ``base`` (left untouched): a qcow2 overlay, else a copy;
    ``extra_mb`` MiB larger than the image (a disk the image is written to is often larger)."""
    size = base.stat().st_size + extra_mb * 1024 * 1024
    if shutil.which("qemu-img"):
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base.resolve()),
             str(overlay), str(size)],
            check=True,
        )
    else:
        subprocess.run(["cp", "--sparse=always", str(base), str(overlay)], check=True)
        os.truncate(overlay, size)
    return overlay


def disk_format(path: Path) -> str:
    with path.open("rb") as disk:
        return "qcow2" if disk.read(4) == b"QFI\xfb" else "raw"


class _ConsoleLog:
    """pexpect's log sink: appends to the log file and keeps the text of the current boot."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8", errors="replace")
        self.boot_text: list[str] = []

    def write(self, data: str) -> None:
        self._file.write(data)
        self.boot_text.append(data)

    def flush(self) -> None:
        self._file.flush()

    def note(self, text: str) -> None:
        self._file.write(f"\n===== harness: {text} =====\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class MachineConfig:
    """How to start the machine; a test changes what it needs."""

    #: The system disk (becomes /dev/vda). Written by the guest: give each test its own.
    disk: Path
    #: The machine: ``x86_64`` (q35, OVMF) or ``arm64`` (virt, U-Boot); the disk's architecture.
    arch: str = "x86_64"
    #: Further disks, raw or qcow2 (/dev/vdb, /dev/vdc, ...; ``/dev/disk/by-id/virtio-diskN``).
    extra_disks: Sequence[Path] = ()
    memory_mb: int = 1024
    cpus: int = 2
    #: The guest may reach the host's 127.0.0.1 at :data:`HOST_ADDRESS`; off: it reaches nothing.
    host_access: bool = False
    #: (host port, guest port) pairs: host's 127.0.0.1:host_port reaches the guest's guest_port.
    host_forwards: Sequence[tuple[int, int]] = ()
    #: Seconds from power-on to the shell; None: 120 with KVM, 600 with TCG.
    boot_timeout: float | None = None
    kvm: bool | None = None  # None: use the probe (x86_64 only; arm64 always runs under TCG)
    extra_args: Sequence[str] = field(default_factory=list)


class Machine:
    """One QEMU machine, started with :meth:`start`, talked to over the serial console."""

    def __init__(self, config: MachineConfig, log_path: Path) -> None:
        if config.arch not in QEMU_BINARIES:
            raise MachineError(f"unknown machine {config.arch!r}; known: {', '.join(QEMU_BINARIES)}")
        self.config = config
        self.log_path = log_path
        if config.kvm is not None:
            self.kvm = config.kvm
        else:
            self.kvm = config.arch == "x86_64" and kvm_usable()
        self.boot_timeout = config.boot_timeout or (120.0 if self.kvm else 600.0)
        self._log = _ConsoleLog(log_path)
        #: x86-64: OVMF's code and this machine's own copy of its variables; arm64: U-Boot.
        self._firmware: Path
        self._ovmf_vars: Path | None = None
        if config.arch == "x86_64":
            self._firmware = ovmf_code()
            self._ovmf_vars = config.disk.with_name(config.disk.name + ".OVMF_VARS.fd")
            if not self._ovmf_vars.exists():
                shutil.copyfile(ovmf_vars_template(self._firmware), self._ovmf_vars)
        else:
            self._firmware = uboot_arm64()
        self._child: pexpect.spawn | None = None
        #: Boots so far, and what the last one printed (firmware, GRUB, kernel, systemd; no
        #: carriage returns).
        self.boots = 0
        self.last_boot_log = ""
        #: The partition the boot script booted last time, from its message (None: not seen).
        self.booted_partition: int | None = None
        #: Resets so far (each ends one QEMU process; the harness starts the next).
        self.resets = 0

    # --- power -----------------------------------------------------------------------------------

    def command_line(self) -> list[str]:
        cfg = self.config
        args = [QEMU_BINARIES[cfg.arch], *self._board_args(), "-m", str(cfg.memory_mb),
                "-smp", str(cfg.cpus), "-no-reboot", "-nodefaults", "-display", "none",
                "-monitor", "none",
                "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"]
        for index, extra in enumerate(cfg.extra_disks, start=1):
            args += ["-drive", f"if=none,id=disk{index},format={disk_format(extra)},file={extra}",
                     "-device", f"virtio-blk-pci,drive=disk{index},serial=disk{index}"]
        netdev = "user,id=net0,restrict=" + ("off" if cfg.host_access else "on")
        for host_port, guest_port in cfg.host_forwards:
            netdev += f",hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"
        args += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"]
        args += ["-accel", "kvm"] if self.kvm else ["-accel", "tcg"]
        args += list(cfg.extra_args)
        return args

    def _board_args(self) -> list[str]:
        """The board, its firmware and the system disk, as the layer's pymender-qemu gives them.
        U-Boot's distro boot tries the virtio disks in order, so the system disk, the first one
        on the PCI bus, is where it finds the boot script."""
        args: list[str] = RUN_SCRIPT.machine_args(
            OE_MACHINES[self.config.arch], self.config.disk, self._firmware, self._ovmf_vars,
            disk_format(self.config.disk))
        return args

    def start(self) -> str:
        """Power on and wait for the shell; returns what the boot printed."""
        if self.running:
            raise MachineError("the machine is already running")
        self._log.boot_text = []
        self._power_on()
        return self.wait_for_shell()

    def _power_on(self) -> None:
        args = self.command_line()
        self._log.note(f"power on ({'kvm' if self.kvm else 'tcg'}): {' '.join(args)}")
        self._child = pexpect.spawn(
            args[0], args[1:], encoding="utf-8", codec_errors="replace", echo=False,
            timeout=self.boot_timeout, logfile=None, dimensions=(50, 500),
        )
        self._child.logfile_read = self._log

    def _power_on_after_reset(self) -> None:
        """QEMU has exited: a reset if it exited cleanly (``-no-reboot``), else it failed."""
        child = self._require()
        child.close()
        self._child = None
        if child.exitstatus != 0:
            raise MachineError(
                f"QEMU exited with status {child.exitstatus} (signal {child.signalstatus}); "
                f"console log: {self.log_path}\nlast output:\n{_tail(child.before)}"
            )
        self.resets += 1
        self._log.note("reset (QEMU exits on a reset; the same disks are powered on again)")
        self._power_on()

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.isalive()

    def wait_for_shell(self, timeout: float | None = None) -> str:
        """Wait for the automatic root login, then make the shell easy to drive."""
        child = self._require()
        deadline = time.monotonic() + (timeout or self.boot_timeout)
        self.booted_partition = None
        while True:
            index = self._expect([BOOTING_PARTITION, SHELL_PROMPT, pexpect.EOF], deadline,
                                 "the root shell")
            if index == 0:
                self.booted_partition = int(child.match.group(1))
            elif index == 2:  # a reset on the way (a boot script's rollback reset, say)
                self._power_on_after_reset()
                child = self._require()
                self.booted_partition = None
            else:
                break
        # No echo, no line editing, no prompt, no kernel messages in command output.
        child.sendline("stty -echo; set +o emacs +o vi; PS1=''; PS2=''; export TERM=dumb; "
                       "dmesg -n 1")
        self.run("true", timeout=max(30.0, deadline - time.monotonic()))
        self.boots += 1
        self.last_boot_log = "".join(self._log.boot_text).replace("\r", "")
        return self.last_boot_log

    def reboot(self, timeout: float | None = None) -> str:
        """``reboot`` in the guest, then wait for the next shell; returns the new boot's output.

        Once the kernel has said it restarts the machine, the guest has done all it does; if
        QEMU has not carried out the reset :data:`RESET_GRACE` seconds later, the harness cuts the
        power and powers on (noted in the console log), as a board's watchdog would.
        """
        self._log.note("reboot")
        self._log.boot_text = []
        self._require().sendline("reboot")
        return self._await_reset(time.monotonic() + (timeout or self.boot_timeout))

    def wait_for_reboot(self, timeout: float | None = None) -> str:
        """Wait for the guest to reboot by itself (a daemon that installed an update, say) and
        for the next shell; returns the new boot's output. ``timeout`` covers both (default: the
        boot timeout). The console is read all along, as :meth:`reboot` reads it."""
        self._log.note("waiting for the guest to reboot by itself")
        self._log.boot_text = []
        return self._await_reset(time.monotonic() + (timeout or self.boot_timeout))

    def _await_reset(self, deadline: float) -> str:
        child = self._require()
        index = self._expect([KERNEL_RESTARTING, pexpect.EOF], deadline, "the guest to reset")
        if index == 0:
            try:
                child.expect([pexpect.EOF], timeout=RESET_GRACE)
            except pexpect.TIMEOUT:
                self._log.note(f"no reset {RESET_GRACE:.0f} s after the kernel's last message: "
                               "power cut")
                self.kill()
                self._power_on()
                return self.wait_for_shell(max(1.0, deadline - time.monotonic()))
        self._power_on_after_reset()
        return self.wait_for_shell(max(1.0, deadline - time.monotonic()))

    def poweroff(self, timeout: float = 120.0) -> None:
        """Orderly shutdown: ``poweroff`` in the guest, then wait for QEMU to exit."""
        self._log.note("poweroff")
        child = self._require()
        child.sendline("poweroff")
        self._expect([pexpect.EOF], time.monotonic() + timeout, "QEMU to exit after poweroff")
        child.close()
        self._child = None

    def kill(self) -> None:
        """Cut the power: QEMU is killed at once; what the guest had not flushed is lost."""
        if self._child is None:
            return
        self._log.note("power cut (QEMU killed)")
        self._child.kill(signal.SIGKILL)
        self._child.close(force=True)
        self._child = None

    def close(self) -> None:
        """Kill QEMU if it still runs and close the log (for teardown)."""
        self.kill()
        self._log.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands -------------------------------------------------------------------------------

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str]:
        """Run a shell command line in the guest; its exit code and output (stdout+stderr,
        trailing newlines removed as ``$(...)`` does).

        ``command`` must not read standard input (the harness's next line would be its input).
        """
        child = self._require()
        token = secrets.token_hex(6)
        child.sendline(f"{command}\n__rc=$?; printf '\\n%s%s:%d\\n' '{_RC_MARK}' '{token}' $__rc")
        pattern = re.compile(re.escape(_RC_MARK + token) + r":(\d+)\r*\n")
        self._expect([pattern], time.monotonic() + timeout, f"the command {command!r}")
        code = int(child.match.group(1))
        return code, child.before.replace("\r", "").rstrip("\n")

    def check(self, command: str, timeout: float = 120.0) -> str:
        """Run ``command``; its output, or :class:`MachineError` when it exits non-zero."""
        code, output = self.run(command, timeout)
        if code != 0:
            raise MachineError(f"{command!r} exited with {code}:\n{output}")
        return output

    # --- internals -----------------------------------------------------------------------------

    def _require(self) -> pexpect.spawn:
        if self._child is None:
            raise MachineError("the machine is not running")
        return self._child

    def _expect(self, patterns: list[object], deadline: float, what: str) -> int:
        child = self._require()
        try:
            return int(child.expect(patterns, timeout=max(1.0, deadline - time.monotonic())))
        except pexpect.TIMEOUT:
            raise MachineError(
                f"timed out waiting for {what}; console log: {self.log_path}\n"
                f"last output:\n{_tail(child.before)}"
            ) from None
        except pexpect.EOF:
            raise MachineError(
                f"QEMU exited while waiting for {what}; console log: {self.log_path}\n"
                f"last output:\n{_tail(child.before)}"
            ) from None


def _tail(text: object, limit: int = 3000) -> str:
    return str(text or "")[-limit:]


def make_fat_disk(path: Path, files: dict[str, Path], *, label: str = "USBSTICK",
                  spare_mb: int = 16) -> Path:
    """A FAT disk image holding ``files`` (name on the disk -> host file), like a USB stick.

    The filesystem covers the whole disk, without a partition table, as on many sticks. Built
    without root rights (mkfs.fat and mtools).
    """
    size = sum(source.stat().st_size for source in files.values())
    size_mb = size // (1 << 20) + spare_mb
    with path.open("wb") as disk:
        disk.truncate(size_mb << 20)
    subprocess.run(["mkfs.fat", "-n", label, str(path)], check=True, stdout=subprocess.DEVNULL)
    for name, source in files.items():
        subprocess.run(["mcopy", "-i", str(path), str(source), f"::/{name}"], check=True)
    return path
