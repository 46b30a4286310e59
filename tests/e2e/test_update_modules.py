"""Update Modules on a booted device: applications installed next to the A/B root filesystems.

The test image carries pymender's four modules, installed by the layer's recipe
(``PYMENDER_UPDATE_MODULES``). The Artifacts are made on the host with ``pymender-artifact``'s
generators (signed: the image refuses unsigned ones) and come on a USB stick. One boot serves
every scenario that needs none, one after the other, since none of them disturbs the next:

1. ``single-file``: installed without a reboot (``--reboot-exit-code`` exits 0), committed;
2. ``directory``: one version committed, the next installed, then rolled back;
3. ``deb``: a Debian package installed with dpkg and committed at once (no rollback support);
4. a failing module (``directory`` refusing a tar that points outside its directory): the
   device is left as it was (the directory, the installed Artifact);
5. a rootfs update (reboot, commit), then an application update on the new system.

On arm64 one scenario runs (the ``single-file`` install and commit): the modules are the same
shell on both machines, and the rootfs update is covered by the standalone scenarios.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from e2e.conftest import BootMachine, E2EImage
from e2e.guest import mount_stick, running_release
from e2e.qemu import Machine, make_fat_disk
from pymender.cli.artifact import main as artifact_main
from pymender.cli.common import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

STICK = "/mnt/usb1"
INSTALL_TIMEOUT = 1200.0


def generate(image: E2EImage, *args: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        options = ["-k", str(image.keys["signing_key"]), "--compression", "none"]
        code = run_cli("pymender-artifact", artifact_main,
                       [*args, *options] if args[0] == "write" else [*args, "--", *options])
    assert code == 0, err.getvalue()


def artifacts(image: E2EImage, tmp: Path) -> dict[str, Path]:
    """The Artifacts of every scenario, by name on the stick."""
    device = image.device_type
    out: dict[str, Path] = {}
    for name, content in (("app-1", "one\n"), ("app-2", "two\n")):
        source = tmp / name / "app.conf"
        source.parent.mkdir(parents=True)
        source.write_text(content)
        source.chmod(0o640)
        out[f"{name}.mender"] = tmp / f"{name}.mender"
        generate(image, "single-file-artifact-gen", "-n", name, "-t", device, "-d", "/opt/app",
                 "-o", str(out[f"{name}.mender"]), str(source))
    for name, files in (("www-1", {"index.html": "1", "css/site.css": "c"}), ("www-2", {"index.html": "2"})):
        tree = tmp / name / "tree"
        for rel, content in files.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(content)
        out[f"{name}.mender"] = tmp / f"{name}.mender"
        generate(image, "directory-artifact-gen", "-n", name, "-t", device, "-d", "/srv/www",
                 "-o", str(out[f"{name}.mender"]), str(tree))
    package = tmp / "deb" / "pymender-e2e-hello"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN" / "control").write_text(
        "Package: pymender-e2e-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: pymender <t@example.com>\n"
        "Description: test package of the Update Module end-to-end tests\n")
    (package / "opt" / "hello").mkdir(parents=True)
    (package / "opt" / "hello" / "hello.txt").write_text("hello from a deb\n")
    deb = tmp / "deb" / "pymender-e2e-hello_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(package), str(deb)], check=True,
                   capture_output=True)
    out["hello.mender"] = tmp / "hello.mender"
    generate(image, "deb-artifact-gen", "-n", "hello-1", "-t", device, "-o", str(out["hello.mender"]), str(deb))
    # a directory Artifact whose tar points outside its directory
    evil = tmp / "evil"
    evil.mkdir()
    with tarfile.open(evil / "update.tar", "w") as tar:
        for member in ("./index.html", "../escaped"):
            info = tarfile.TarInfo(member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    (evil / "dest_dir").write_text("/srv/www\n")
    out["evil.mender"] = tmp / "evil.mender"
    generate(image, "write", "module-image", "-T", "directory", "-n", "evil-1", "-t", device,
             "-o", str(out["evil.mender"]), "-f", str(evil / "update.tar"), "-f", str(evil / "dest_dir"))
    return out


def pymender(machine: Machine, arguments: str, timeout: float = 120.0) -> tuple[int, str]:
    return machine.run(f"pymender {arguments} 2>/tmp/pymender.log", timeout=timeout)


def test_applications_with_update_modules(boot: BootMachine, test_image: E2EImage, tmp_path: Path) -> None:
    files = artifacts(test_image, tmp_path)
    if test_image.arch == "arm64":
        files = {name: files[name] for name in ("app-1.mender",)}
    else:
        files["rootfs.mender"] = test_image.update_artifact
    machine = boot(extra_disks=[make_fat_disk(tmp_path / "stick.img", files)])
    assert machine.booted_partition == 2
    machine.check("ls /usr/share/pymender/modules/v3/single-file /usr/share/pymender/modules/v3/deb")
    mount_stick(machine, STICK)

    # 1. single-file: no reboot, waits for the commit
    code, out = pymender(machine, f"install --no-progress --reboot-exit-code {STICK}/app-1.mender")
    assert code == 0, machine.check("cat /tmp/pymender.log")
    assert "Installed app-1 with the single-file Update Module; not committed yet." in out
    assert machine.check("cat /opt/app/app.conf") == "one"
    assert machine.check("stat -c %a /opt/app/app.conf") == "640"
    assert pymender(machine, "commit")[0] == 0
    assert pymender(machine, "show-artifact") == (0, "app-1")
    if test_image.arch == "arm64":
        return

    # 2. directory: committed, the next one rolled back
    assert pymender(machine, f"install --no-progress {STICK}/www-1.mender")[0] == 0
    assert pymender(machine, "commit")[0] == 0
    assert pymender(machine, f"install --no-progress {STICK}/www-2.mender")[0] == 0
    assert machine.check("find /srv/www -type f | sort") == "/srv/www/index.html"
    code, out = pymender(machine, "rollback")
    assert code == 0 and "Rolled back www-2" in out
    assert machine.check("find /srv/www -type f | sort") == "/srv/www/css/site.css\n/srv/www/index.html"
    assert machine.check("cat /srv/www/index.html") == "1"
    assert pymender(machine, "show-artifact") == (0, "www-1")

    # 3. deb: dpkg installs the package, committed at once
    code, out = machine.run(f"mender-update install {STICK}/hello.mender 2>/tmp/mender-update.log")
    assert (code, out.splitlines()) == (0, ["Installing artifact...", "Update Module doesn't support rollback. "
                                            "Committing immediately.", "Installed and committed."]), \
        machine.check("cat /tmp/mender-update.log")
    assert machine.check("dpkg-query -W -f '${Status}' pymender-e2e-hello") == "install ok installed"
    assert machine.check("cat /opt/hello/hello.txt") == "hello from a deb"
    assert pymender(machine, "show-artifact") == (0, "hello-1")

    # 4. a failing module leaves the device as it was
    before = machine.check("find /srv/www /opt -type f | sort | xargs sha256sum")
    code, _ = pymender(machine, f"install --no-progress {STICK}/evil.mender")
    assert code == 1
    log = machine.check("cat /tmp/pymender.log")
    assert "points outside the directory" in log and "failed in ArtifactInstall" in log
    assert machine.check("find /srv/www /opt -type f | sort | xargs sha256sum") == before
    assert machine.run("test -e /srv/escaped")[0] == 1
    assert pymender(machine, "show-artifact") == (0, "hello-1")
    assert machine.run("ls /var/lib/pymender/modules/v3/payloads/0000/tree")[0] != 0

    # 5. a rootfs update, then an application update on the new system
    code, out = pymender(machine, f"install --no-progress {STICK}/rootfs.mender", timeout=INSTALL_TIMEOUT)
    assert code == 0, machine.check("cat /tmp/pymender.log")
    machine.reboot()
    assert machine.booted_partition == 3
    assert running_release(machine, test_image.marker_file) == test_image.update_release
    assert pymender(machine, "commit")[0] == 0
    mount_stick(machine, STICK)
    assert pymender(machine, f"install --no-progress {STICK}/app-2.mender")[0] == 0
    assert pymender(machine, "commit")[0] == 0
    assert machine.check("cat /opt/app/app.conf") == "two"
    provides = pymender(machine, "show-provides")[1].splitlines()
    assert "artifact_name=app-2" in provides and "rootfs-image.single-file.version=app-2" in provides
    assert f"rootfs-image.version={test_image.update_release}" in provides
