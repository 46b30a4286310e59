"""The pymender-image front end: options, output, and one-line errors with the right exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, require_tool
from pymender.cli.common import run_cli
from pymender.cli.image import main

MIB = 1024 * 1024
SMALL = ["--total-size-mb", "64", "--boot-size-mb", "4", "--data-size-mb", "8", "--alignment", "1048576"]


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli("pymender-image", main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_rootfs_size_defaults_to_meta_mender_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["rootfs-size"], capsys) == (0, "442368\n", "")
    assert cli(["rootfs-size", "--bytes"], capsys) == (0, f"{432 * MIB}\n", "")
    code, out, _ = cli(["rootfs-size", *SMALL], capsys)
    assert (code, out) == (0, f"{25 * 1024}\n")


def test_rootfs_size_json_has_the_layout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["rootfs-size", "--json", "--layout", "uefiimg", "--disk-id", "x"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["layout"] == "uefiimg" and data["rootfs_size_kib"] == 442368
    assert len(data["partitions"]) == 4


def test_rootfs_size_checks_a_rootfs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "r.ext4"
    with open(image, "wb") as file:
        file.truncate(26 * MIB)
    code, out, err = cli(["rootfs-size", *SMALL, "--rootfs", str(image)], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("pymender-image: error: rootfs image ")
    assert "raise --total-size-mb to at least 66;" in err
    with open(image, "wb") as file:
        file.truncate(25 * MIB)
    assert cli(["rootfs-size", *SMALL, "--rootfs", str(image)], capsys)[0] == 0


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        ([], 2, "the following arguments are required: COMMAND"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        (["rootfs-size", "--alignment", "1000"], 2, "alignment 1000 bytes is not a positive"),
        (["rootfs-size", "--alignment", "lots"], 2, "'lots' is not a whole number"),
        (["rootfs-size", "--total-size-mb", "100"], 2, "sizes do not add up"),
        (["rootfs-size", "--boot-size-mb", "0"], 2, "--boot-size-mb must be a positive"),
        (["rootfs-size", "--reserved-bootloader-bytes", "4096"], 2, "not a multiple of the alignment"),
        (["rootfs-size", "--json", "--bytes"], 2, "not allowed with argument"),
        (["rootfs-size", "--disk-id", "0x0"], 2, "disk id 0x0 is not allowed"),
        (["filesystem", "-o", "x"], 2, "the following arguments are required: --partition"),
        (["filesystem", "--partition", "rootfs-a", "-o", "x"], 2, "invalid choice: 'rootfs-a'"),
        (["filesystem", "--partition", "data", "--dir", "/nonexistent/d", "-o", "x"], 3,
         "data directory /nonexistent/d does not exist"),
        (["filesystem", "--partition", "boot", "--boot-size-mb", "0", "-o", "x"], 2,
         "--boot-size-mb must be a positive"),
        (["show"], 2, "the following arguments are required: IMAGE"),
        (["show", "/nonexistent/image"], 3, "image /nonexistent/image does not exist"),
        (["build", "--layout", "sdimg", "--rootfs", "r"], 2, "required: -o/--output"),
        (["build", "--layout", "msdos", "--rootfs", "r", "-o", "x", "--boot-dir", "."], 2,
         "invalid choice: 'msdos'"),
        (["build", "--layout", "sdimg", "--rootfs", "r", "-o", "x"], 2,
         "one of the arguments --boot-dir --boot-image is required"),
        (["build", "--layout", "sdimg", "--rootfs", "r", "-o", "x", "--boot-dir", ".",
          "--boot-image", "b"], 2, "not allowed with argument"),
        (["build", "--layout", "sdimg", "--rootfs", "/nonexistent/r", "-o", "x", "--boot-dir", "."],
         3, "rootfs image /nonexistent/r does not exist"),
        (["build", "--layout", "sdimg", "--rootfs", "r", "-o", "x", "--boot-dir", ".",
          "--bootloader", "u-boot.bin"], 2, "--bootloader 'u-boot.bin' is not FILE:SECTOR"),
        (["build", "--layout", "sdimg", "--rootfs", "r", "-o", "x", "--boot-dir", ".",
          "--bootloader", "u-boot.bin:two"], 2, "'two' is not a sector number"),
        (["build", "--layout", "sdimg", "--rootfs", "r", "-o", "x", "--boot-dir", ".",
          "--mbr-boot-code-length", "100"], 2, "--mbr-boot-code-length needs --mbr-boot-code"),
        (["build", "--layout", "sdimg", "--rootfs", "r", "-o", "x", "--boot-dir", ".",
          "--mbr-boot-code", "b", "--mbr-boot-code-length", "ten"], 2, "'ten' is not a whole number"),
    ],
)
def test_bad_input_is_one_line_with_exit_code(
    argv: list[str], code: int, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, out, err = cli(argv, capsys)
    assert got == code
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("pymender-image: error: ")
    assert fragment in err


def test_help_of_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, must in (
        (["--help"], "rootfs-size"),
        (["build", "--help"], "round_down((total - boot - data - 2 * alignment"),
        (["show", "--help"], "--json"),
        (["filesystem", "--help"], "--data-image data.ext4"),
        (["rootfs-size", "--help"], "MENDER_CALC_ROOTFS_SIZE"),
    ):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
        assert must in capsys.readouterr().out


def test_build_and_show(
    tmp_path: Path, rootfs: Path, boot_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tool in ("mkfs.vfat", "mcopy", "mkfs.ext4"):
        require_tool(tool)
    out_image = tmp_path / "x.uefiimg"
    argv = ["build", "--layout", "uefiimg", "--rootfs", str(rootfs), "--boot-dir", str(boot_dir),
            *SMALL, "-o", str(out_image), "--bmap", "--disk-id", "0x11223344"]
    code, out, err = cli(argv, capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"wrote {out_image}: uefiimg, 64 MiB, disk id ")
    assert lines[1].startswith("  1  boot      start      1048576  size      4194304 (4 MiB)")
    assert lines[-1].startswith(f"wrote {out_image}.bmap: ")
    code, out, _ = cli(["show", str(out_image), "--json"], capsys)
    assert code == 0
    assert [p["size"] for p in json.loads(out)["partitions"]] == [4 * MIB, 25 * MIB, 25 * MIB, 8 * MIB]
    code, out, _ = cli(["build", *argv[1:], "--json"], capsys)
    data = json.loads(out)
    assert data["bmap"] == f"{out_image}.bmap" and data["bytes_written"] > 3 * MIB
    assert cli(["build", *argv[1:], "-q"], capsys) == (0, "", "")


def test_build_with_bootloader_files(
    tmp_path: Path, rootfs: Path, boot_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tool in ("mkfs.vfat", "mcopy", "mkfs.ext4"):
        require_tool(tool)
    deploy = tmp_path / "deploy:2024"  # a colon in the path: the sector follows the last one
    deploy.mkdir()
    (deploy / "spl.bin").write_bytes(b"\x11" * 1500)
    (deploy / "u-boot.img").write_bytes(b"\x22" * 4096)
    image = tmp_path / "board.sdimg"
    argv = ["build", "--layout", "sdimg", "--rootfs", str(rootfs), "--boot-dir", str(boot_dir),
            *SMALL, "-o", str(image), "--bootloader", f"{deploy}/u-boot.img:80",
            "--bootloader", f"{deploy}/spl.bin:2"]
    code, out, err = cli(argv, capsys)
    assert (code, err) == (0, "")
    assert f"  bootloader {deploy}/spl.bin: sectors 2-4 (1500 bytes)\n" in out
    assert f"  bootloader {deploy}/u-boot.img: sectors 80-87 (4096 bytes)\n" in out
    content = image.read_bytes()
    assert content[1024 : 1024 + 1500] == b"\x11" * 1500
    assert content[80 * 512 : 88 * 512] == b"\x22" * 4096
    code, out, _ = cli([*argv, "--json"], capsys)
    assert json.loads(out)["bootloaders"] == [
        {"path": f"{deploy}/spl.bin", "sector": 2, "offset": 1024, "size": 1500, "end": 2524},
        {"path": f"{deploy}/u-boot.img", "sector": 80, "offset": 40960, "size": 4096, "end": 45056},
    ]
    code, out, err = cli([*argv, "--bootloader", f"{deploy}/u-boot.img:2041"], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "past the start of partition 1" in err
    assert "raise --reserved-bootloader-bytes to at least 1048576;" in err


def test_build_with_mbr_boot_code(
    tmp_path: Path, rootfs: Path, boot_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tool in ("mkfs.vfat", "mcopy", "mkfs.ext4"):
        require_tool(tool)
    boot_img = tmp_path / "boot.img"
    boot_img.write_bytes(b"\xeb\x63\x90" + b"\xf4" * 509)
    image = tmp_path / "pc.sdimg"
    argv = ["build", "--layout", "sdimg", "--rootfs", str(rootfs), "--boot-dir", str(boot_dir),
            *SMALL, "-o", str(image), "--disk-id", "0x11223344", "--mbr-boot-code", str(boot_img)]
    code, out, err = cli(argv, capsys)
    assert (code, err) == (0, "")
    assert f"  MBR boot code {boot_img}: its first 440 bytes\n" in out
    sector = image.read_bytes()[:512]
    assert sector[:440] == boot_img.read_bytes()[:440]
    assert sector[440:444] == bytes.fromhex("44332211")
    code, out, _ = cli([*argv, "--mbr-boot-code-length", "3", "--json"], capsys)
    assert json.loads(out)["mbr_boot_code"] == {"path": str(boot_img), "length": 3}
    assert image.read_bytes()[:4] == b"\xeb\x63\x90\0"
    code, out, err = cli([*argv, "--mbr-boot-code-length", "446"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("pymender-image: error: --mbr-boot-code-length 446 is not between 1 and 440")


def test_filesystem_then_build_equals_build_from_directories(
    tmp_path: Path, rootfs: Path, boot_dir: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tool in ("mkfs.vfat", "mcopy", "mkfs.ext4"):
        require_tool(tool)
    for path in data_dir.rglob("*"):
        if path.is_file():
            path.read_bytes()  # settle access times (mke2fs 1.47.0 copies them)
    ids = ["--disk-id", "0x11223344"]
    boot_fs, data_fs = tmp_path / "boot.vfat", tmp_path / "data.ext4"
    code, out, err = cli(["filesystem", "--partition", "boot", "--dir", str(boot_dir), *SMALL, *ids,
                          "-o", str(boot_fs)], capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"wrote {boot_fs}: boot filesystem, vfat labelled BOOT, id ")
    assert out.endswith(", 4 MiB (4194304 bytes)\n")
    code, out, _ = cli(["filesystem", "--partition", "data", "--dir", str(data_dir), *SMALL, *ids,
                        "-o", str(data_fs), "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert {k: data[k] for k in ("output", "partition", "filesystem", "label", "size")} == {
        "output": str(data_fs), "partition": "data", "filesystem": "ext4", "label": "data",
        "size": 8 * MIB,
    }
    base = ["build", "--layout", "sdimg", "--rootfs", str(rootfs), *SMALL, *ids, "-q"]
    one, two = tmp_path / "one.sdimg", tmp_path / "two.sdimg"
    assert cli([*base, "--boot-dir", str(boot_dir), "--data-dir", str(data_dir), "-o", str(one)],
               capsys) == (0, "", "")
    assert cli([*base, "--boot-image", str(boot_fs), "--data-image", str(data_fs), "-o", str(two)],
               capsys) == (0, "", "")
    assert one.read_bytes() == two.read_bytes()
    code, out, _ = cli(["show", str(two), "--json"], capsys)
    shown = json.loads(out)["partitions"]
    assert (shown[0]["label"], shown[3]["fs_id"]) == ("BOOT", data["fs_id"])
    assert cli(["filesystem", "--partition", "data", *SMALL, "-o", str(data_fs), "-q"], capsys) == (0, "", "")


def test_console_script_runs() -> None:
    script = Path(sys.executable).parent / "pymender-image"
    if not script.exists():
        pytest.skip("pymender-image is not installed in this environment")
    proc = subprocess.run(
        [str(script), "rootfs-size", "--alignment", "3"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().startswith("pymender-image: error: alignment 3 bytes")
    assert "Traceback" not in proc.stderr
