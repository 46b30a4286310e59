"""pymender-image's disk images, checked by the tools that will meet them.

sfdisk and sgdisk read the partition tables, fsck.vfat and e2fsck the filesystems, bmaptool
flashes with the block map. Expected numbers are worked out here independently of the library:
with 128 MiB total, 8 MiB boot, 16 MiB data and 4 MiB alignment, each rootfs partition is
(128 - 8 - 16 - 2 * 4) / 2 = 48 MiB. The images carry MBR boot code and raw bootloader files
before partition 1, as a board's would, so every check also shows that they leave the tables
intact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import require_file, require_tool
from pymender.image import (
    FilesystemSpec,
    ImageKind,
    ImageSpec,
    PartitionRole,
    SizeRequest,
    build_filesystem,
    build_image,
    read_image,
)
from pymender.image.raw import BootloaderFile

pytestmark = pytest.mark.interop

MIB = 1024 * 1024
SECTORS_PER_MIB = MIB // 512
SIZES = SizeRequest(total_mb=128, boot_mb=8, data_mb=16, alignment=4 * MIB)
# (start MiB, size MiB) of partitions 1..4, by the formula in the module docstring.
EXPECTED = [(4, 8), (12, 48), (60, 48), (108, 16)]
EFI_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
FIXED_TIME = 1_600_000_000
# Raw files: an SPL right after the table (sector 2 behind an MBR, 34 behind a GPT's 0-33),
# and a U-Boot at 1 MiB that ends exactly where partition 1 starts (4 MiB).
SPL_SECTOR = {ImageKind.SDIMG: 2, ImageKind.UEFIIMG: 34}
UBOOT_SECTOR = 2048
UBOOT_SIZE = 3 * MIB


def run(*argv: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull},
    )
    assert proc.returncode in ok, f"{argv[0]} exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    mkfs = require_tool("mkfs.ext4")
    for tool in ("mkfs.vfat", "mcopy"):
        require_tool(tool)
    root = tmp_path_factory.mktemp("inputs")
    tree = root / "rootfs-tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "os-release").write_text("ID=pymender-test\n")
    (tree / "usr").mkdir()
    (tree / "usr" / "blob").write_bytes(os.urandom(3 * MIB))
    rootfs = root / "rootfs.ext4"
    with open(rootfs, "wb") as file:
        file.truncate(40 * MIB)
    run(mkfs, "-q", "-F", "-L", "rootfs", "-d", str(tree), str(rootfs))
    boot = root / "boot"
    (boot / "EFI" / "BOOT").mkdir(parents=True)
    (boot / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(b"MZ" + os.urandom(100_000))
    (boot / "grub.cfg").write_text("set timeout=0\n")
    data = root / "data"
    (data / "pymender").mkdir(parents=True)
    (data / "pymender" / "device_type").write_text("device_type=qemux86-64\n")
    spl = root / "spl.bin"
    spl.write_bytes(os.urandom(30_000))
    uboot = root / "u-boot.img"
    uboot.write_bytes(os.urandom(UBOOT_SIZE))
    # A whole sector of boot code, "disk signature" and "partition table" included: only its
    # first 440 bytes may reach the image.
    boot_code = root / "boot-code.bin"
    boot_code.write_bytes(os.urandom(510) + b"\x55\xaa")
    return {
        "rootfs": rootfs, "boot": boot, "data": data, "root": root, "spl": spl, "uboot": uboot,
        "boot_code": boot_code,
    }


@pytest.fixture(scope="module", params=list(ImageKind), ids=lambda k: k.value)
def image(request: pytest.FixtureRequest, inputs: dict[str, Path]) -> Path:
    kind: ImageKind = request.param
    spec = ImageSpec(
        kind=kind,
        rootfs=inputs["rootfs"],
        output=inputs["root"] / f"test.{kind.value}",
        sizes=SIZES,
        boot_dir=inputs["boot"],
        data_dir=inputs["data"],
        disk_id="0x5eed1234",
        bmap=True,
        bootloaders=(
            BootloaderFile(inputs["spl"], SPL_SECTOR[kind]),
            BootloaderFile(inputs["uboot"], UBOOT_SECTOR),
        ),
        mbr_boot_code=inputs["boot_code"],
    )
    return build_image(spec).output


def test_bootloader_files_are_in_place(image: Path, inputs: dict[str, Path]) -> None:
    kind = ImageKind.SDIMG if image.suffix == ".sdimg" else ImageKind.UEFIIMG
    run("cmp", "-n", "30000", str(inputs["spl"]), str(image), "0", str(SPL_SECTOR[kind] * 512))
    run("cmp", "-n", str(UBOOT_SIZE), str(inputs["uboot"]), str(image), "0", str(UBOOT_SECTOR * 512))
    assert UBOOT_SECTOR * 512 + UBOOT_SIZE == EXPECTED[0][0] * MIB  # it touches partition 1
    run("cmp", "-n", "440", str(inputs["boot_code"]), str(image))
    shown = read_image(image)
    spl_start = SPL_SECTOR[kind] * 512
    assert shown.boot_code
    assert shown.raw_data == (
        (spl_start, spl_start + -(-30_000 // 512) * 512),
        (UBOOT_SECTOR * 512, UBOOT_SECTOR * 512 + UBOOT_SIZE),
    )


def test_grub_bios_boot_code_and_core_image(inputs: dict[str, Path], tmp_path: Path) -> None:
    """GRUB for a PC BIOS as the Boards section of docs/pymender-image.md puts it on an sdimg:
    boot.img as the MBR boot code, core.img from sector 1, where boot.img looks for it."""
    boot_img = require_file(Path("/usr/lib/grub/i386-pc/boot.img"), "grub-pc-bin")
    core = tmp_path / "core.img"
    run(require_tool("grub-mkimage"), "-O", "i386-pc", "-o", str(core), "-p", "(hd0,msdos1)/grub",
        "biosdisk", "part_msdos", "fat", "normal")
    kernel_sector = int.from_bytes(boot_img.read_bytes()[0x5C:0x64], "little")
    assert kernel_sector == 1
    spec = ImageSpec(
        kind=ImageKind.SDIMG, rootfs=inputs["rootfs"], output=tmp_path / "pc.sdimg", sizes=SIZES,
        boot_dir=inputs["boot"], disk_id="0x5eed1234", mbr_boot_code=boot_img,
        bootloaders=(BootloaderFile(core, kernel_sector),),
    )
    image = build_image(spec).output
    header, parts = sfdisk_dump(image)
    assert header["label-id"] == "0x5eed1234"
    assert [(int(p["start"]), p["type"]) for p in parts] == [
        (EXPECTED[0][0] * SECTORS_PER_MIB, "ef"), *[(s * SECTORS_PER_MIB, "83") for s, _ in EXPECTED[1:]]
    ]
    assert "No errors detected." in run(require_tool("sfdisk"), "--verify", str(image)).stdout
    run("cmp", "-n", "440", str(boot_img), str(image))
    run("cmp", "-n", str(core.stat().st_size), str(core), str(image), "0", "512")


def sfdisk_dump(image: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    proc = run(require_tool("sfdisk"), "--dump", str(image))
    assert proc.stderr == ""
    header: dict[str, str] = {}
    parts: list[dict[str, str]] = []
    for line in proc.stdout.splitlines():
        if " : " in line:
            fields = dict(
                (k.strip(), v.strip().strip('"'))
                for k, _, v in (f.partition("=") for f in line.split(" : ", 1)[1].split(","))
            )
            parts.append(fields)
        elif ": " in line:
            key, _, value = line.partition(": ")
            header[key] = value
    return header, parts


def test_sfdisk_reads_exact_starts_sizes_and_types(image: Path) -> None:
    header, parts = sfdisk_dump(image)
    assert [(int(p["start"]), int(p["size"])) for p in parts] == [
        (start * SECTORS_PER_MIB, size * SECTORS_PER_MIB) for start, size in EXPECTED
    ]
    if image.suffix == ".sdimg":
        assert header["label"] == "dos"
        assert header["label-id"] == "0x5eed1234"
        assert [p["type"] for p in parts] == ["ef", "83", "83", "83"]
        assert ["bootable" in p for p in parts] == [True, False, False, False]
    else:
        assert header["label"] == "gpt"
        assert [p["type"] for p in parts] == [EFI_GUID] + [LINUX_GUID] * 3
        assert [p["name"] for p in parts] == ["boot", "rootfs-a", "rootfs-b", "data"]
        assert len({p["uuid"] for p in parts}) == 4
        assert header["first-lba"] == "34"
        assert int(header["last-lba"]) == 128 * SECTORS_PER_MIB - 34
    verify = run(require_tool("sfdisk"), "--verify", str(image))
    assert "No errors detected." in verify.stdout


def test_meta_mender_alignment_rules_hold(image: Path) -> None:
    """The rules of meta-mender's test_partition_alignment, on sfdisk's numbers."""
    _, parts = sfdisk_dump(image)
    align = SIZES.alignment // 512
    starts = [int(p["start"]) for p in parts]
    sizes = [int(p["size"]) for p in parts]
    assert starts[0] == align  # partition 1 starts exactly one alignment in
    assert all(s % align == 0 for s in starts)
    assert all(starts[i + 1] == starts[i] + sizes[i] for i in range(3))  # contiguous
    assert sizes[0] == 8 * SECTORS_PER_MIB  # boot: its size rounded up to the alignment
    assert sizes[3] == 16 * SECTORS_PER_MIB  # data: likewise
    assert sizes[1] == sizes[2] and sizes[1] % align == 0
    # The image is the whole storage device, and the part after data holds the GPT backup.
    assert image.stat().st_size == 128 * MIB
    assert (starts[3] + sizes[3]) * 512 <= 128 * MIB - SIZES.alignment


@pytest.mark.parametrize("image", [ImageKind.UEFIIMG], indirect=True, ids=["uefiimg"])
def test_sgdisk_verifies_the_gpt(image: Path) -> None:
    proc = run(require_tool("sgdisk"), "--verify", str(image))
    assert "No problems found" in proc.stdout
    # sgdisk also says "No problems found" after repairing a damaged copy in memory: the
    # warnings around it are what show a bad backup or CRC.
    assert proc.stderr.strip() == ""
    assert not re.search(r"caution|warning|error|corrupt", proc.stdout, re.IGNORECASE)
    info = run(require_tool("sgdisk"), "--info=1", str(image)).stdout
    assert re.search(rf"Partition GUID code: {EFI_GUID}", info)


def partition(image: Path, number: int, where: Path) -> Path:
    start, size = EXPECTED[number - 1]
    out = where / f"{image.name}.p{number}"
    with open(image, "rb") as src, open(out, "wb") as dst:
        src.seek(start * MIB)
        dst.write(src.read(size * MIB))
    return out


def test_filesystems_pass_fsck_and_hold_the_files(
    image: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    boot = partition(image, 1, tmp_path)
    run(require_tool("fsck.vfat"), "-n", str(boot))
    expected = (inputs["boot"] / "EFI" / "BOOT" / "BOOTX64.EFI").read_bytes()
    got = subprocess.run(
        [require_tool("mcopy"), "-n", "-i", str(boot), "::/EFI/BOOT/BOOTX64.EFI", "-"],
        capture_output=True,
        check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull},
    ).stdout
    assert got == expected
    e2fsck = require_tool("e2fsck")
    debugfs = require_tool("debugfs")
    for number, label in ((2, "rootfs"), (4, "data")):
        spec = f"{image}?offset={EXPECTED[number - 1][0] * MIB}"
        run(e2fsck, "-fn", spec)
        blkid = run(require_tool("blkid"), "-p", "-O", str(EXPECTED[number - 1][0] * MIB), str(image))
        assert f'LABEL="{label}"' in blkid.stdout
    data = partition(image, 4, tmp_path)
    device_type = run(debugfs, "-R", "cat /pymender/device_type", str(data)).stdout
    assert device_type == "device_type=qemux86-64\n"
    # Rootfs B is left empty: no filesystem signature at all.
    assert partition(image, 3, tmp_path).read_bytes() == bytes(48 * MIB)


def test_filesystem_files_pass_fsck_on_their_own(inputs: dict[str, Path], tmp_path: Path) -> None:
    """The filesystem command's files, as a data image shipped alone would be checked."""
    boot = build_filesystem(
        FilesystemSpec(PartitionRole.BOOT, tmp_path / "boot.vfat", SIZES, inputs["boot"])
    ).output
    run(require_tool("fsck.vfat"), "-n", str(boot))
    assert boot.stat().st_size == 8 * MIB
    data = build_filesystem(
        FilesystemSpec(PartitionRole.DATA, tmp_path / "data.ext4", SIZES, inputs["data"])
    ).output
    run(require_tool("e2fsck"), "-fn", str(data))
    assert data.stat().st_size == 16 * MIB
    device_type = run(require_tool("debugfs"), "-R", "cat /pymender/device_type", str(data)).stdout
    assert device_type == "device_type=qemux86-64\n"


def test_bmaptool_copy_equals_plain_copy(image: Path, tmp_path: Path) -> None:
    bmaptool = require_tool("bmaptool")
    bmap = Path(f"{image}.bmap")
    assert bmap.is_file()
    flashed = tmp_path / "flashed.img"
    run(bmaptool, "copy", "--bmap", str(bmap), str(image), str(flashed))
    plain = tmp_path / "plain.img"
    shutil.copyfile(image, plain)
    assert flashed.stat().st_size == plain.stat().st_size == 128 * MIB
    run("cmp", str(flashed), str(plain))
    # bmaptool verified every range checksum while copying; a damaged bmap must be refused.
    bad = tmp_path / "bad.bmap"
    text = bmap.read_text()
    first = re.search(r'chksum="([0-9a-f]{64})"', text)
    assert first is not None
    bad.write_text(text.replace(first.group(1), "0" * 64, 1))
    proc = run(bmaptool, "copy", "--bmap", str(bad), str(image), str(tmp_path / "x"), ok=(1,))
    assert "checksum mismatch" in proc.stderr


def test_default_8_mib_alignment_on_a_sparse_gigabyte(inputs: dict[str, Path], tmp_path: Path) -> None:
    spec = ImageSpec(
        kind=ImageKind.UEFIIMG,
        rootfs=inputs["rootfs"],
        output=tmp_path / "big.uefiimg",
        sizes=SizeRequest(),  # 1024 total, 16 boot, 128 data, 8 MiB: meta-mender's defaults
        boot_dir=inputs["boot"],
    )
    image = build_image(spec).output
    _, parts = sfdisk_dump(image)
    assert [(int(p["start"]) // SECTORS_PER_MIB, int(p["size"]) // SECTORS_PER_MIB) for p in parts] == [
        (8, 16),
        (24, 432),
        (456, 432),
        (888, 128),
    ]
    verify = run(require_tool("sgdisk"), "--verify", str(image))
    assert "No problems found" in verify.stdout and verify.stderr.strip() == ""
    run(require_tool("e2fsck"), "-fn", f"{image}?offset={888 * MIB}")
    assert image.stat().st_blocks * 512 < 64 * MIB  # sparse: far below its 1 GiB size
