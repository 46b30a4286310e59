"""Build the test image the end-to-end tests boot under QEMU, and its update.

    scripts/build-test-image [--arch x86_64|arm64] [OUTPUT_DIR]

Two machines: ``x86_64`` (the default; UEFI and GRUB; OUTPUT_DIR defaults to build/test-image)
and ``arm64`` (QEMU's virt machine with U-Boot; default build/test-image-arm64).

Outputs (in OUTPUT_DIR):
    pymender-test.sdimg    the disk: 1 boot (FAT: on x86-64 GRUB's EFI binary, boot script and
                           two-copy GRUB environment; on arm64 U-Boot's boot.scr and the two
                           environment copies), 2 rootfs A (release-1), 3 rootfs B (empty), 4 data
    release-2.mender       the update: the same system marked release-2, signed with the key
                           the image trusts
    keys/                  that signing key, a second key the image does not trust, and the test
                           CA the image trusts for https sources (with its private key, so tests
                           can sign server certificates)
    image.json             what was built: names, device type, partitions, paths

The root filesystem comes from Debian bookworm packages (mmdebstrap, from the mirrors named by
this machine's apt sources) and is cached as a tarball under the cache directory, with the
downloaded .deb files, so a rebuild after a change to pymender or to the layer's runtime files
only repeats the cheap steps. Nothing is rebuilt when no input changed.

Everything pymender adds is made by the layer's own code: BitBake's parser expands the layer's
recipes and image classes (with the oe-core stand-ins of tests/layer) and their tasks run here,
as a Yocto build would run them: the packages' do_install (pymender's unit and data link,
pymender-config, the fstab lines and mount points, growing /data, fw_env.config), the boot
loader integration's do_compile/do_deploy (GRUB's script and environment, U-Boot's boot.scr and
environment), GRUB's EFI binary from the layer's GRUB_BUILDIN, the rootfs post-processing, and
the image types' functions pymender_part_image (the disk image, with pymender-image) and
pymender_artifact_image (the update, with pymender-artifact). Only what oe-core would do is done
by this script: the Debian system stands in for the packages, the Python package is copied in,
and the ext4 filesystems are made at the size oe-core's image class gives them. Needs root
(mmdebstrap's chroot, file ownership in the filesystem images); ci/install-deps installs the
tools. The arm64 system is configured under qemu-user (binfmt_misc), which is slow: that happens
once, in the cached base system; what a rebuild repeats runs natively where it can.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

try:  # pymender's own tools run (pymender-image, pymender-artifact): they live in the venv
    import pymender  # noqa: F401
except ImportError:
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), sys.argv[0], *sys.argv[1:]])
    sys.exit("build-test-image: pymender is not importable; run ci/setup-venv first")

sys.path.insert(0, str(REPO / "tests"))  # the layer's parser and task runner live with its tests
from layer.bbparse import layer_function  # noqa: E402
from layer.layerrun import LayerRun, install_into  # noqa: E402

# --- what the image is -----------------------------------------------------------------------

SUITE = "bookworm"
FACTORY_RELEASE = "release-1"
UPDATE_RELEASE = "release-2"
MARKER_FILE = "etc/pymender-test-release"
HOSTNAME = "pymender-qemu"
DISK = "/dev/vda"
PART_BOOT, PART_A, PART_B, PART_DATA = 1, 2, 3, 4
# fsck.mode=skip: a test boot does not check /data and the boot partition (ext4's journal and
# the two-copy bootloader environment are what survive power cuts); it saves seconds of every
# emulated boot.
KERNEL_ARGS = "rw console=CONSOLE,115200 panic=5 quiet fsck.mode=skip"

# Debian packages of the root filesystem: systemd as init, udev for device units, Debian's cloud
# kernel (virtio drivers), Python with the modules pymender imports and cryptography for
# signature checks, and the tools the tests use on the device.
PACKAGES = [
    "systemd-sysv", "udev", "kmod", "linux-image-cloud-amd64", "initramfs-tools",
    "python3", "python3-cryptography", "util-linux", "mount", "e2fsprogs", "dosfstools",
    "ca-certificates", "fdisk",
]
BASE_FORMAT = 1  # bump to force a new base tarball when the hooks below change meaning

# Runs after the essential packages are installed, before the kernel: the initramfs gets only
# what this machine needs (virtio disk; ext4 and vfat are built in or loaded later).
ESSENTIAL_HOOK = r"""#!/bin/sh
set -eu
root="$1"
mkdir -p "$root/etc/initramfs-tools/hooks" "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\n' > "$root/etc/initramfs-tools/conf.d/pymender-test-image.conf"
cat > "$root/etc/initramfs-tools/hooks/pymender-test-image" <<'EOF'
#!/bin/sh
# The test image boots from a virtio disk: make sure its drivers are in the initramfs.
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules INITRAMFS_MODULES
EOF
chmod 755 "$root/etc/initramfs-tools/hooks/pymender-test-image"
"""

# Turns the Debian system into a quiet test machine: fixed identity, root logged in on the
# serial console with no password, networking by DHCP, no units the tests do not need.
CUSTOMIZE_HOOK = r"""#!/bin/sh
set -eu
root="$1"
echo HOSTNAME > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tHOSTNAME\n' > "$root/etc/hosts"
echo 5b6b1b1e0ad94f2a9a6f5e8c4c2d7a10 > "$root/etc/machine-id"
chroot "$root" passwd -q -d root
mkdir -p "$root/etc/systemd/system/serial-getty@CONSOLE.service.d"
cat > "$root/etc/systemd/system/serial-getty@CONSOLE.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 - $TERM
EOF
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' > "$root/etc/systemd/journald.conf.d/volatile.conf"
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' > "$root/etc/systemd/network/50-dhcp.network"
systemctl --quiet --root="$root" enable systemd-networkd.service
# Units a test machine does not need; each costs seconds of an emulated boot.
for unit in systemd-networkd-wait-online.service getty@tty1.service getty-static.service \
        systemd-firstboot.service systemd-pstore.service systemd-binfmt.service \
        systemd-update-utmp.service systemd-update-utmp-runlevel.service \
        e2scrub_all.timer e2scrub_reap.service fstrim.timer dpkg-db-backup.timer \
        apt-daily.timer apt-daily-upgrade.timer \
        dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
        sys-fs-fuse-connections.mount sys-kernel-config.mount \
        modprobe@configfs.service modprobe@dm_mod.service modprobe@fuse.service \
        modprobe@loop.service modprobe@drm.service modprobe@efi_pstore.service; do
    systemctl --quiet --root="$root" mask "$unit"
done
cd "$root/boot"
ln -sf "$(ls vmlinuz-* | head -n1)" vmlinuz
ln -sf "$(ls initrd.img-* | head -n1)" initrd.img
""".replace("HOSTNAME", HOSTNAME)

LAYER = REPO / "meta-pymender"
#: The layer's parser, its oe-core stand-ins and the task runner: inputs of the image too.
LAYER_TESTS = REPO / "tests" / "layer"
UBOOT_ENV_FILES = ("uboot.env", "uboot-redund.env")
#: Fixed timestamps in the filesystems and Artifacts, as a Yocto build's SOURCE_DATE_EPOCH.
SOURCE_DATE_EPOCH = "1700000000"


@dataclass(frozen=True)
class Target:
    """What differs between the two test machines; everything else is shared."""

    #: The name on the command line, in image.json and in the e2e tests' ids.
    name: str
    #: Debian's name of the architecture (mmdebstrap --arch).
    debian_arch: str
    device_type: str
    bootloader: str
    #: Where the boot partition is mounted (the layer's fstab line).
    boot_mount: str
    #: The serial console the kernel prints on and root is logged in on.
    console: str
    kernel_package: str
    #: Extra packages of the root filesystem.
    extra_packages: tuple[str, ...]
    #: Modules the initramfs must hold to find the root filesystem.
    initramfs_modules: tuple[str, ...]
    #: Host tools the build runs (besides mmdebstrap, mkfs.ext4, openssl, tar).
    tools: tuple[str, ...]
    #: The oe-core machine whose layer configuration the image is built with.
    machine: str
    #: root= is this plus the partition number; empty: the boot script finds the PARTUUID.
    kernel_root_base: str
    default_output: str
    #: The cached base system's file name starts with this (x86-64's name is the historic one).
    base_prefix: str

    @property
    def packages(self) -> list[str]:
        kernel_at = PACKAGES.index("linux-image-cloud-amd64")
        return [*PACKAGES[:kernel_at], self.kernel_package, *PACKAGES[kernel_at + 1:],
                *self.extra_packages]

    @property
    def essential_hook(self) -> str:
        return ESSENTIAL_HOOK.replace("INITRAMFS_MODULES", " ".join(self.initramfs_modules))

    @property
    def customize_hook(self) -> str:
        return CUSTOMIZE_HOOK.replace("CONSOLE", self.console)

    @property
    def kernel_args(self) -> str:
        return KERNEL_ARGS.replace("CONSOLE", self.console)


MACHINES = {
    "x86_64": Target(
        name="x86_64", debian_arch="amd64", device_type="qemux86-64", bootloader="grub",
        boot_mount="/boot/efi", console="ttyS0", kernel_package="linux-image-cloud-amd64",
        extra_packages=(), initramfs_modules=("virtio_pci", "virtio_blk", "ext4"),
        tools=("grub-mkimage",), default_output="build/test-image", base_prefix="base-",
        machine="qemux86-64", kernel_root_base="",
    ),
    # QEMU's virt machine: U-Boot (Debian's qemu_arm64 build) runs the layer's boot.scr from
    # the FAT boot partition; the PL011 UART is ttyAMA0. Debian's cloud kernel has the virtio
    # and PCI host drivers of the virt machine; fw_printenv (libubootenv-tool) is the peer
    # that reads the environment U-Boot and pymender write.
    "arm64": Target(
        name="arm64", debian_arch="arm64", device_type="qemuarm64", bootloader="uboot",
        boot_mount="/uboot", console="ttyAMA0", kernel_package="linux-image-cloud-arm64",
        extra_packages=("libubootenv-tool",),
        initramfs_modules=("virtio_pci", "virtio_blk", "ext4"),
        tools=("mkimage", "mkenvimage"), default_output="build/test-image-arm64",
        base_prefix="base-arm64-", machine="qemuarm64", kernel_root_base=DISK,
    ),
}


def log(message: str) -> None:
    print(f"build-test-image: {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, **kwargs: object) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)  # type: ignore[call-overload]


# --- inputs: tools, apt sources, cache keys ----------------------------------------------------


def check_tools(target: Target) -> None:
    missing = [t for t in ("mmdebstrap", "mkfs.ext4", "openssl", "tar", *target.tools)
               if shutil.which(t) is None and shutil.which(t, path="/usr/sbin:/sbin") is None]
    if target.bootloader == "grub" and not Path("/usr/lib/grub/x86_64-efi/linux.mod").exists():
        missing.append("grub-efi-amd64-bin")
    if target.debian_arch != host_debian_arch() and not Path(
            f"/proc/sys/fs/binfmt_misc/qemu-{binfmt_name(target)}").exists():
        missing.append(f"qemu-user-static registered with binfmt_misc for {target.name}")
    if missing:
        raise SystemExit(f"build-test-image: missing {', '.join(missing)} (run ci/install-deps)")
    if os.geteuid() != 0:
        raise SystemExit("build-test-image: must run as root (mmdebstrap's chroot mode)")


def host_debian_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()


def binfmt_name(target: Target) -> str:
    return {"arm64": "aarch64", "amd64": "x86_64"}[target.debian_arch]


def apt_sources() -> list[Path]:
    """This machine's apt source files that name the suite (mirror hosts are never hard-coded).

    ``PYMENDER_TEST_IMAGE_SOURCES`` names a file (one-line or deb822 format) to use instead.
    """
    override = os.environ.get("PYMENDER_TEST_IMAGE_SOURCES")
    if override:
        return [Path(override)]
    candidates = [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    found = []
    for path in candidates:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        active = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if any(re.search(rf"(^deb\s.*\s{SUITE}(\s|$))|(^Suites:.*\b{SUITE}\b)", line)
               for line in active):
            found.append(path)
    if not found:
        raise SystemExit(
            f"build-test-image: no apt source for {SUITE} in /etc/apt; "
            "set PYMENDER_TEST_IMAGE_SOURCES to a sources file"
        )
    return found


def base_key(target: Target, sources: list[Path]) -> str:
    digest = hashlib.sha256()
    parts = [str(BASE_FORMAT), SUITE, " ".join(target.packages), target.essential_hook,
             target.customize_hook]
    if target.debian_arch != "amd64":  # (x86-64's key predates the second machine: kept as is)
        parts.append(target.debian_arch)
    for part in parts:
        digest.update(part.encode() + b"\0")
    for path in sources:
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def tree_digest(digest: hashlib._Hash, root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())


def inputs_key(base: str) -> str:
    digest = hashlib.sha256(base.encode())
    digest.update(Path(__file__).read_bytes())
    tree_digest(digest, REPO / "src" / "pymender")
    tree_digest(digest, LAYER)
    tree_digest(digest, LAYER_TESTS)
    tree_digest(digest, REPO / "modules")
    digest.update((REPO / "pyproject.toml").read_bytes())
    return digest.hexdigest()



# --- steps -----------------------------------------------------------------------------------


def build_base(target: Target, tarball: Path, cache: Path, sources: list[Path]) -> None:
    """The Debian system as a tarball, from cached .debs where possible.

    A foreign architecture's maintainer scripts run under qemu-user (binfmt_misc): slow, so
    this is the step that is cached.
    """
    debs = cache / ("debs" if target.debian_arch == "amd64" else f"debs-{target.debian_arch}")
    debs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        essential = Path(tmp) / "essential-hook"
        customize = Path(tmp) / "customize-hook"
        essential.write_text(target.essential_hook)
        customize.write_text(target.customize_hook)
        partial = Path(tmp) / "base.tar"
        excludes = ["/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*",
                    "/usr/share/info/*"]
        args = ["mmdebstrap", "--variant=essential", "--mode=root", "--quiet",
                f"--arch={target.debian_arch}",
                f"--include={','.join(target.packages)}", "--skip=essential/unlink"]
        args += [f"--dpkgopt=path-exclude={e}" for e in excludes]
        args += ["--dpkgopt=path-include=/usr/share/doc/*/copyright",
                 "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
                 f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
                 f"--essential-hook=sh {essential} \"$1\"",
                 f"--customize-hook=sh {customize} \"$1\"",
                 f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
                 SUITE, str(partial), *map(str, sources)]
        run(*args)
        partial.rename(tarball)
    for old in cache.glob(f"{target.base_prefix}*.tar"):
        if old != tarball and re.fullmatch(rf"{re.escape(target.base_prefix)}[0-9a-f]{{16}}\.tar",
                                           old.name):
            old.unlink()


def make_keys(keys: Path) -> None:
    """Signing keys and the test CA; kept across rebuilds so the image's trust stays put."""
    keys.mkdir(parents=True, exist_ok=True)
    for name in ("artifact-signing", "untrusted-signing"):
        if not (keys / f"{name}.key").exists():
            run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                "-out", keys / f"{name}.key")
            run("openssl", "ec", "-in", keys / f"{name}.key", "-pubout",
                "-out", keys / f"{name}.pem", stderr=subprocess.DEVNULL)
    if not (keys / "test-ca.pem").exists():
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", keys / "test-ca.key", "-out", keys / "test-ca.pem",
            "-days", "3650", "-subj", "/CN=pymender test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", stderr=subprocess.DEVNULL)


def install_python_package(target: Target, rootfs: Path) -> None:
    """The pymender package and its commands, as the recipe's python_setuptools_build_meta
    install gives them (oe-core's part: a wheel installed into the image)."""
    dist = rootfs / "usr/lib/python3/dist-packages/pymender"
    shutil.copytree(REPO / "src" / "pymender", dist,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    scripts = {entry.name: entry.value for entry in importlib.metadata.distribution("pymender").entry_points
               if entry.group == "console_scripts"}
    for name, entry_point in sorted(scripts.items()):
        module, func = entry_point.split(":")
        wrapper = rootfs / "usr/bin" / name
        wrapper.write_text(
            "#!/usr/bin/python3\nimport sys\n"
            f"from {module} import {func}\n"
            f"if __name__ == \"__main__\":\n    sys.exit({func}())\n"
        )
        wrapper.chmod(0o755)
    compile_python(target, rootfs, "/usr/lib/python3/dist-packages/pymender")


def layer_conf(target: Target, total_mb: int, keys: Path) -> str:
    """The local.conf of this machine's test image: what a Yocto user would set."""
    settings = {
        "MACHINE": target.machine,
        "PYMENDER_ARTIFACT_NAME": UPDATE_RELEASE,
        "PYMENDER_BOOTLOADER": target.bootloader,
        "PYMENDER_STORAGE_TOTAL_SIZE_MB": str(total_mb),
        "PYMENDER_KERNEL_IMAGE": "/boot/vmlinuz",  # Debian's (arm64: a gzip-compressed Image)
        "PYMENDER_INITRD_IMAGE": "/boot/initrd.img",
        "PYMENDER_KERNEL_ARGS": target.kernel_args,
        "PYMENDER_KERNEL_ROOT_BASE": target.kernel_root_base,
        "PYMENDER_ARTIFACT_SIGNING_KEY": str(keys / "artifact-signing.key"),
        "PYMENDER_ARTIFACT_VERIFY_KEY": str(keys / "artifact-signing.pem"),
        "PYMENDER_IMAGE_BMAP": "0",
        # mender-update is installed (install_python_package installs every command): the
        # end-to-end tests drive a device in Mender's layout with it.
        "PYMENDER_MENDER_UPDATE": "1",
        "PYMENDER_UPDATE_MODULES": "single-file directory script deb",
    }
    lines = ['INHERIT += "pymender-full"'] + [f'{name} = "{value}"' for name, value in settings.items()]
    return "\n".join(lines) + "\n"


def tools_dir(work: Path) -> Path:
    """Programs under the names oe-core's native recipes give them (uboot-mkimage, ...)."""
    bindir = work / "tools"
    bindir.mkdir(parents=True, exist_ok=True)
    names = {"nativepython3": sys.executable, "uboot-mkimage": shutil.which("mkimage"),
             "uboot-mkenvimage": shutil.which("mkenvimage")}
    for name, program in names.items():
        if program:  # a wrapper, not a link: a venv's python finds its packages by its own path
            (bindir / name).write_text(f'#!/bin/sh\nexec "{program}" "$@"\n')
            (bindir / name).chmod(0o755)
    return bindir


def deploy(data: object, layer: LayerRun, image_deploy: Path) -> None:
    """What BitBake does with a recipe's do_deploy output: DEPLOYDIR into DEPLOY_DIR_IMAGE."""
    shutil.copytree(data.getVar("DEPLOYDIR"), image_deploy, dirs_exist_ok=True)  # type: ignore[attr-defined]


def install_layer_packages(target: Target, layer: LayerRun, rootfs: Path, image_deploy: Path) -> None:
    """The layer's packages in the image and its boot files in the deploy directory, each made by
    its recipe's own tasks."""
    updater = layer.recipe("pymender")
    updater.setVar("python_pep517_do_install", ":")  # the package itself: install_python_package
    layer.unpack(updater)
    layer.run(updater, "do_install")
    install_into(updater, rootfs)

    config = layer.build("pymender-config", ["do_compile", "do_install"])
    install_into(config, rootfs)

    # base-files: the layer's fstab lines appended to the image's own fstab, and the mount points.
    base = layer.recipe("base-files")
    layer.unpack(base)
    shutil.copy(rootfs / "etc/fstab", Path(base.getVar("S")) / "fstab")
    layer.run(base, "do_pymender_fstab", "do_install")
    install_into(base, rootfs)

    growfs = layer.build("pymender-growfs-data", ["do_compile", "do_install"])
    install_into(growfs, rootfs)
    # PYMENDER_UPDATE_MODULES names all of them: the end-to-end tests install applications
    modules = layer.build("pymender-update-modules", ["do_install"])
    install_into(modules, rootfs)
    # SYSTEMD_AUTO_ENABLE = "enable": what systemd.bbclass's postinst does.
    run("systemctl", "--quiet", f"--root={rootfs}", "enable", "pymender-grow-data.service")

    if target.bootloader == "uboot":
        uboot = layer.build("pymender-ubootenv", ["do_pymender_defines", "do_compile", "do_install", "do_deploy"],
                            env={"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
        install_into(uboot, rootfs)
        deploy(uboot, layer, image_deploy)
    else:
        grubenv = layer.build("pymender-grubenv", ["do_pymender_defines", "do_compile", "do_deploy"])
        deploy(grubenv, layer, image_deploy)
        # grub-efi's do_compile and do_deploy: one EFI binary with the layer's GRUB_BUILDIN.
        grub = layer.recipe("grub-efi")
        image_deploy.mkdir(parents=True, exist_ok=True)
        run("grub-mkimage", "-O", "x86_64-efi", "-p", grub.getVar("EFIDIR"),
            "-o", image_deploy / f"grub-efi-{grub.getVar('EFI_BOOT_IMAGE')}", *grub.getVar("GRUB_BUILDIN").split())



def compile_python(target: Target, rootfs: Path, package: str) -> None:
    """Byte-compile an installed package: natively when this Python makes the same bytecode as
    the image's (the same version), else with the image's own Python (under qemu-user when the
    image is of another architecture, which takes much longer)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if (rootfs / "usr/lib" / version).is_dir():
        run(sys.executable, "-m", "compileall", "-q", "-d", package,
            rootfs / package.lstrip("/"))
    else:
        run("chroot", rootfs, "python3", "-m", "compileall", "-q", package)


def speed_up_boot(rootfs: Path) -> None:
    """Test conveniences that shorten every emulated boot and shutdown (not the layer's).

    Applied to the unpacked system rather than in the mmdebstrap hooks, so changing them keeps
    the cached Debian system.
    """
    masked = rootfs / "etc/systemd/system"
    # The random seed and the journal flush only matter for a persistent system; the journal
    # is volatile here and the machine id fixed.
    for unit in ("systemd-random-seed.service", "systemd-journal-flush.service",
                 "systemd-journal-catalog-update.service", "systemd-hwdb-update.service",
                 "ldconfig.service", "systemd-boot-system-token.service"):
        link = masked / unit
        if not link.is_symlink():
            link.symlink_to("/dev/null")
    conf = rootfs / "etc/systemd/system.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    # A unit that does not stop at once would otherwise hold a reboot for up to 90 s.
    (conf / "pymender-test-image.conf").write_text(
        "[Manager]\nDefaultTimeoutStopSec=10s\nShowStatus=no\n")


def set_release(rootfs: Path, name: str) -> None:
    """The visible version marker and the name pymender reports before its first update."""
    (rootfs / MARKER_FILE).write_text(name + "\n")
    info = rootfs / "etc/mender/artifact_info"
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(f"artifact_name={name}\n")


def make_ext4(rootfs: Path, image: Path, size_kib: int) -> None:
    """oe-core's ext4 image type: a filesystem of ``size_kib`` (get_rootfs_size) from the rootfs."""
    if image.exists():
        image.unlink()
    run("mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", rootfs, image, f"{size_kib}K",
        stdout=subprocess.DEVNULL, env={**os.environ, "E2FSPROGS_FAKE_TIME": SOURCE_DATE_EPOCH})



def rootfs_size_mb(rootfs: Path) -> int:
    used = int(subprocess.run(["du", "-s", "--block-size=1M", str(rootfs)], check=True,
                              capture_output=True, text=True).stdout.split()[0])
    return (int(used * 1.15) + 96 + 15) // 16 * 16


def total_size_mb(rootfs_mb: int) -> int:
    """PYMENDER_STORAGE_TOTAL_SIZE_MB whose rootfs partitions hold ``rootfs_mb`` MiB, with the
    layer's default boot and data sizes and alignment (what a user sizing an image does)."""
    align, boot, data = 8, 16, 128
    rootfs = -(-rootfs_mb // align) * align
    return 2 * rootfs + boot + data + 2 * align


def assemble(target: Target, layer: LayerRun, rootfs: Path, out: Path) -> tuple[Path, Path]:
    """The disk image (release-1) and the update Artifact (release-2), by the layer's image
    functions: the rootfs post-processing, the size check, the boot files, the bootstrap
    Artifact (pymender_bootstrap_image), pymender_part_image and pymender_artifact_image."""
    image = layer.recipe("image")
    image.setVar("IMAGE_ROOTFS", str(rootfs))
    image.setVar("BB_CURRENTTASK", "image_sdimg")
    env = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    layer.run(image, "pymender_rootfs_postprocess")
    imgdeploy = Path(image.getVar("IMGDEPLOYDIR"))
    imgdeploy.mkdir(parents=True, exist_ok=True)
    ext4 = imgdeploy / f"{image.getVar('IMAGE_NAME')}.{image.getVar('PYMENDER_ROOTFS_FSTYPE')}"
    size_kib = int(layer_function("get_rootfs_size")(image))

    # The disk image is the factory release's build (one configuration makes both releases
    # here): its data partition's bootstrap Artifact names release-1 and its rootfs image.
    image.setVar("PYMENDER_ARTIFACT_NAME", FACTORY_RELEASE)
    set_release(rootfs, FACTORY_RELEASE)
    make_ext4(rootfs, ext4, size_kib)
    layer.run(image, "pymender_check_rootfs_size", "pymender_stage_boot_files")
    layer.run(image, "do_image_bootstrap_artifact", "do_image_sdimg", env=env)
    disk = out / "pymender-test.sdimg"
    shutil.move(imgdeploy / f"{image.getVar('IMAGE_NAME')}.sdimg", disk)

    image.setVar("PYMENDER_ARTIFACT_NAME", UPDATE_RELEASE)
    set_release(rootfs, UPDATE_RELEASE)
    make_ext4(rootfs, ext4, size_kib)
    layer.run(image, "pymender_check_rootfs_size", "do_image_mender", env=env)
    artifact = out / f"{UPDATE_RELEASE}.mender"
    shutil.move(imgdeploy / f"{image.getVar('IMAGE_NAME')}.mender", artifact)
    return disk, artifact



def build(target: Target, out: Path, cache: Path, force: bool) -> None:
    check_tools(target)
    sources = apt_sources()
    key = base_key(target, sources)
    stamp = out / ".inputs"
    want = inputs_key(key)
    manifest = out / "image.json"
    if not force and stamp.exists() and stamp.read_text() == want and manifest.exists():
        log(f"{out} is up to date")
        return
    started = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{target.base_prefix}{key}.tar"
    if tarball.exists():
        log(f"using the cached Debian system {tarball.name}")
    else:
        log(f"building the Debian {target.debian_arch} system with mmdebstrap from "
            f"{', '.join(map(str, sources))}")
        build_base(target, tarball, cache, sources)

    out.mkdir(parents=True, exist_ok=True)
    if stamp.exists():
        stamp.unlink()
    keys = out / "keys"
    make_keys(keys)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    log("unpacking the Debian system and installing pymender")
    run("tar", "-C", rootfs, "--numeric-owner", "-xpf", tarball)
    install_python_package(target, rootfs)
    rootfs_mb = rootfs_size_mb(rootfs)
    total_mb = total_size_mb(rootfs_mb)
    log(f"running the layer's tasks for {target.machine} ({total_mb} MiB disk)")
    layer = LayerRun(work / "bitbake", layer_conf(target, total_mb, keys),
                     path=[Path(sys.executable).parent, tools_dir(work)])
    image_deploy = Path(layer.recipe("image").getVar("DEPLOY_DIR_IMAGE"))
    install_layer_packages(target, layer, rootfs, image_deploy)
    trust_test_ca(rootfs, keys)
    speed_up_boot(rootfs)

    log(f"making the {FACTORY_RELEASE} disk image and the {UPDATE_RELEASE} Artifact with the "
        "layer's image functions")
    image, artifact = assemble(target, layer, rootfs, out)
    size_mb = int(layer_function("pymender_calc_rootfs_size_kib")(layer.recipe("image"))) // 1024
    shutil.rmtree(work)

    if target.bootloader == "uboot":
        env_info: dict[str, object] = {
            "uboot_env_files": [f"{target.boot_mount}/{name}" for name in UBOOT_ENV_FILES]}
    else:
        env_info = {"grub_env_dir": f"{target.boot_mount}/grub-mender-grubenv"}
    manifest.write_text(json.dumps({
        "image": image.name,
        "arch": target.name,
        "bootloader": target.bootloader,
        "layout": "sdimg",
        "device_type": target.device_type,
        "factory_release": FACTORY_RELEASE,
        "update_release": UPDATE_RELEASE,
        "update_artifact": artifact.name,
        "marker_file": "/" + MARKER_FILE,
        "partitions": {"boot": f"{DISK}{PART_BOOT}", "rootfs_a": f"{DISK}{PART_A}",
                       "rootfs_b": f"{DISK}{PART_B}", "data": f"{DISK}{PART_DATA}"},
        "boot_mount": target.boot_mount,
        **env_info,
        "rootfs_size_mb": size_mb,
        "total_size_mb": total_mb,
        "keys": {"signing_key": "keys/artifact-signing.key",
                 "verify_key": "keys/artifact-signing.pem",
                 "untrusted_signing_key": "keys/untrusted-signing.key",
                 "ca_cert": "keys/test-ca.pem", "ca_key": "keys/test-ca.key"},
    }, indent=2) + "\n")
    stamp.write_text(want)
    log(f"done in {time.monotonic() - started:.0f} s: {image}, {artifact}")


def trust_test_ca(rootfs: Path, keys: Path) -> None:
    """The test CA, trusted system-wide (https sources of the tests; not the layer's)."""
    cadir = rootfs / "usr/local/share/ca-certificates"
    cadir.mkdir(parents=True, exist_ok=True)
    shutil.copy(keys / "test-ca.pem", cadir / "pymender-test-ca.crt")
    run("chroot", rootfs, "update-ca-certificates", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def default_cache_dir() -> Path:
    """Outside the checkout, so fresh clones (and CI) reuse what an earlier build downloaded."""
    if os.environ.get("PYMENDER_TEST_IMAGE_CACHE"):
        return Path(os.environ["PYMENDER_TEST_IMAGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pymender" / "test-image"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Build the QEMU test image (x86-64 with UEFI and GRUB, or arm64 with U-Boot) "
        "and its update Artifact.")
    parser.add_argument("output", nargs="?", type=Path,
                        help="output directory (default: build/test-image for x86_64, "
                        "build/test-image-arm64 for arm64)")
    parser.add_argument("--arch", choices=sorted(MACHINES), default="x86_64",
                        help="the machine to build for (default: x86_64)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="downloaded packages and the Debian system tarball, shared by every "
                        "checkout (default: $PYMENDER_TEST_IMAGE_CACHE, else "
                        "$XDG_CACHE_HOME/pymender/test-image or ~/.cache/pymender/test-image)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args()
    target = MACHINES[args.arch]
    out = (args.output or REPO / target.default_output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with (out / ".build-lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # builds of the same directory take turns
            build(target, out, args.cache_dir.resolve(), args.force)
    except subprocess.CalledProcessError as err:
        cmd = " ".join(map(str, err.cmd)) if isinstance(err.cmd, list) else str(err.cmd)
        output = "".join(part for part in (err.stdout, err.stderr) if isinstance(part, str))
        raise SystemExit(f"{output}build-test-image: failed (exit {err.returncode}): {cmd}") from None


if __name__ == "__main__":
    main()
