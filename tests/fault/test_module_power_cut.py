"""``pymender`` killed with SIGKILL in every Update Module state, and at every durable I/O step
of a module's install and commit.

The module is pymender's ``single-file`` (rollback supported), wrapped so that it kills the
``pymender`` that called it (SIGKILL, before doing anything) in the state under test. After
each kill, what Mender 5.x's ``resume`` does is done (``pymender resume``; an update that was
never recorded is simply installed again), and the device must be consistent: the installed
file is the one of the Artifact the store names, the module's tree is gone once nothing is
pending, and the next install and commit work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_sim import SimDevice
from helpers import REPO
from module_rig import SHIPPED

RUNNER = Path(__file__).with_name("crash_runner.py")
#: Seconds one pymender command may take. Generous: on a loaded machine a command (a Python
#: start, a module or two) takes seconds, not the fraction of one it takes on an idle one.
RUN_TIMEOUT = 300
#: Seconds a module left behind by a killed pymender gets to be gone once killed.
REAP_TIMEOUT = 60
OLD, NEW, NEXT = b"old\n", b"new\n" * 300_000, b"next\n"

INSTALL_STATES = ["ProvidePayloadFileSizes", "Download", "ArtifactInstall", "NeedsArtifactReboot",
                  "SupportsRollback"]
COMMIT_STATES = ["ArtifactCommit", "Cleanup"]
ROLLBACK_STATES = ["SupportsRollback", "ArtifactRollback", "ArtifactFailure", "Cleanup"]


class Device:
    """A simulated device whose app.conf (in the Artifacts' dest_dir) holds the old content."""

    def __init__(self, root: Path, host: Path, artifacts: dict[str, Path]) -> None:
        self.sim = SimDevice.create(root)
        self.host = host
        self.artifacts = artifacts
        self.dest = artifacts["app-1"].parent / "dest"
        if self.dest.exists():
            for child in self.dest.iterdir():
                child.unlink()
        self.dest.mkdir(exist_ok=True)
        (self.dest / "app.conf").write_bytes(OLD)
        modules = host / "usr-share-mender" / "modules" / "v3"
        modules.mkdir(parents=True, exist_ok=True)
        real = modules / "single-file.real"
        real.write_bytes((SHIPPED / "single-file").read_bytes())
        real.chmod(0o755)
        wrapper = modules / "single-file"
        # kills the pymender that called it, once, in state $KILL_IN
        wrapper.write_text(f"""#!/bin/sh
if [ "$1" = "${{KILL_IN:-}}" ] && [ ! -e "{root}/killed" ]; then
    : > "{root}/killed"
    kill -9 $PPID
    exit 1
fi
exec "{real}" "$@"
""")
        wrapper.chmod(0o755)
        self.tree = self.sim.data_dir / "modules" / "v3" / "payloads" / "0000" / "tree"

    def run(self, *args: str, kill_in: str = "", kill_at: int = -1) -> int:
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONDONTWRITEBYTECODE="1", KILL_IN=kill_in)
        # output to a file, not a pipe: a module left blocked on a FIFO by a killed pymender
        # would hold a pipe open
        with open(self.sim.root / "output", "ab") as output:
            output.write(f"$ pymender {' '.join(args)} (KILL_IN={kill_in!r}, kill at step {kill_at})\n".encode())
            output.flush()
            done = subprocess.run([sys.executable, str(RUNNER), str(kill_at), str(self.sim.root / "steps"),
                                   "-c", str(self.sim.config_path), *args], stdout=output, stderr=output,
                                  env=env, timeout=RUN_TIMEOUT)
            output.write(f"exit {done.returncode}\n".encode())
        self.reap()
        return done.returncode

    def output(self) -> str:
        """What every command so far printed, each after its command line: for failure messages."""
        path = self.sim.root / "output"
        return path.read_text(errors="replace") if path.exists() else ""

    def steps(self) -> int:
        return int((self.sim.root / "steps").read_text())

    def reap(self) -> None:
        """End the modules a killed pymender left behind (blocked on a FIFO of this device, or
        the wrapper that killed it, on its way out), and wait until they are gone: on a loaded
        machine a killed process can outlive the kill by a while, and none may overlap the next
        command."""
        killed = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(self.tree).encode() in cmdline:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):  # gone, or the number reused
                    continue
                killed.append(pid)
        deadline = time.monotonic() + REAP_TIMEOUT
        while killed and time.monotonic() < deadline:
            killed = [pid for pid in killed if _alive(pid)]
            time.sleep(0.01)
        assert not killed, f"processes {killed} of a killed pymender's modules did not end"

    def installed(self) -> str:
        return self.sim.cli("show-artifact")[1].strip()

    def check_consistent(self, *, interrupted_download: bool = False) -> None:
        """The file is the one of the installed Artifact; nothing pending: no tree, no leftovers
        (but for what a download killed before anything was recorded leaves, which the next
        install cleans up)."""
        pending = self.sim.store().pending()
        content = (self.dest / "app.conf").read_bytes()
        if pending is None:
            assert (self.installed(), content) in {("release-1", OLD), ("app-1", NEW), ("app-2", NEXT)}
            if not (interrupted_download and self.installed() == "release-1"):
                assert not self.tree.exists()
                assert sorted(p.name for p in self.dest.iterdir()) == ["app.conf"]

    def settle(self, *, next_update: bool = True) -> None:
        """Mender's way forward: resume what was recorded, else install again; then commit (and
        install and commit the next update)."""
        code = self.run("resume")
        assert code in (0, 1, 2)
        self.check_consistent(interrupted_download=True)
        pending = self.sim.store().pending()
        assert pending is None or pending.state == "Before_ArtifactCommit_Enter", pending
        if pending is None and self.installed() == "release-1":
            assert self.run("install", str(self.artifacts["app-1"])) == 0
        if self.sim.store().pending() is not None:
            assert self.run("commit") == 0
        assert (self.installed(), (self.dest / "app.conf").read_bytes()) == ("app-1", NEW)
        if not next_update:
            return
        assert self.run("install", str(self.artifacts["app-2"])) == 0
        assert self.run("commit") == 0
        assert (self.dest / "app.conf").read_bytes() == NEXT
        self.check_consistent()


def _alive(pid: str) -> bool:
    """Whether process ``pid`` still runs (a zombie has ended: only its parent's wait is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pymender.cli.artifact import main
    from pymender.cli.common import run_cli

    tmp = tmp_path_factory.mktemp("module-artifacts")
    made = {}
    for name, content in (("app-1", NEW), ("app-2", NEXT)):
        source = tmp / name / "app.conf"
        source.parent.mkdir()
        source.write_bytes(content)
        out = tmp / f"{name}.mender"
        # every device installs into the same directory (tests of this module run one by one)
        assert run_cli("pymender-artifact", main, ["single-file-artifact-gen", "-n", name, "-t", "qemux86-64",
                                                   "-d", str(tmp / "dest"), "-o", str(out), str(source), "--",
                                                   "--compression", "none"]) == 0
        made[name] = out
    return made


@pytest.fixture
def device(tmp_path: Path, no_host_configuration: Path, artifacts: dict[str, Path]) -> Iterator[Device]:
    device = Device(tmp_path / "dev", no_host_configuration, artifacts)
    yield device
    print(device.output())  # shown with a failure: every command, what it printed, its exit code


@pytest.mark.parametrize("state", INSTALL_STATES)
def test_kill_in_each_state_of_install(device: Device, state: str) -> None:
    assert device.run("install", str(device.artifacts["app-1"]), kill_in=state) == -9
    device.settle()


@pytest.mark.parametrize("state", COMMIT_STATES)
def test_kill_in_each_state_of_commit(device: Device, state: str) -> None:
    assert device.run("install", str(device.artifacts["app-1"])) == 0
    assert device.run("commit", kill_in=state) == -9
    device.settle()


@pytest.mark.parametrize("state", ROLLBACK_STATES)
def test_kill_in_each_state_of_rollback(device: Device, state: str) -> None:
    assert device.run("install", str(device.artifacts["app-1"])) == 0
    assert device.run("rollback", kill_in=state) == -9
    assert device.run("resume") in (0, 2)
    device.check_consistent()
    # killed before anything was recorded (the query), resume commits as Mender's does; killed
    # inside the rollback, resume finishes it
    expected = ("app-1", NEW) if state == "SupportsRollback" else ("release-1", OLD)
    assert (device.installed(), (device.dest / "app.conf").read_bytes()) == expected
    device.settle()


# 69 kill points, each on a fresh device: about 260 pymender commands one after the other, 69 s
# on an idle 2-CPU machine, 482 s with a load average of 9 from other jobs: too close to the
# suite's 600 s limit per test.
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kill_at_every_step_of_a_module_install_and_commit(device: Device) -> None:
    assert device.run("install", str(device.artifacts["app-1"])) == 0
    install_steps = device.steps()
    assert device.run("commit") == 0
    commit_steps = device.steps()
    assert install_steps > 5 and commit_steps > 2
    root = device.sim.root.parent
    for operation, total in (("install", install_steps), ("commit", commit_steps)):
        for point in range(total):
            fresh = Device(root / f"{operation}-{point}", device.host, device.artifacts)
            if operation == "commit":
                assert fresh.run("install", str(device.artifacts["app-1"])) == 0
            code = fresh.run(operation, *([str(device.artifacts["app-1"])] if operation == "install" else []),
                             kill_at=point)
            assert code == -9, f"{operation} step {point} of {total}: not killed (exit {code})"
            try:
                fresh.settle(next_update=False)  # the next update: the tests of each state
            except AssertionError as err:
                raise AssertionError(f"{operation} killed at step {point} of {total}: {err}") from None
