"""``pymender-artifact single-file-artifact-gen | directory-artifact-gen | deb-artifact-gen``.

Front ends that make the Artifacts of the ``single-file``, ``directory`` and ``deb`` Update
Modules with the command lines of Mender's generator scripts of the same names: the same
options (``-n``, ``-t`` repeatable, ``-d``, ``--software-name``, ``--software-version``,
``--software-filesystem``, ``-o``), the same payload files in the same order, and everything
after ``--`` passed on to ``pymender-artifact write module-image``. The work is
``write module-image``'s.
"""

from __future__ import annotations

import argparse
import stat
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pymender.errors import InputError, UsageError

#: generator -> (payload type, what the positional argument is, default output)
GENERATORS: dict[str, tuple[str, str, str]] = {
    "single-file-artifact-gen": ("single-file", "file", "single-file-artifact.mender"),
    "directory-artifact-gen": ("directory", "directory", "directory-artifact.mender"),
    "deb-artifact-gen": ("deb", "package", "deb-artifact.mender"),
}

_HELP = {
    "single-file": "Single file to bundle in the update (installed as DEST_DIR/<its name>)",
    "directory": "File tree to bundle in the update (replaces DEST_DIR as a whole)",
    "deb": "Debian packages (.deb) to install with dpkg -i; one or more",
}


def build_parser(name: str) -> argparse.ArgumentParser:
    payload_type, what, output = GENERATORS[name]
    parser = argparse.ArgumentParser(
        prog=f"pymender-artifact {name}",
        description=f"Generate an Artifact for the {payload_type} Update Module, with the options of Mender's "
                    f"{name}. Anything after '--' is passed on to 'pymender-artifact write module-image'.")
    parser.add_argument("-n", "--artifact-name", required=True, help="Artifact name")
    parser.add_argument("-t", "--device-type", dest="device_types", action="append", required=True,
                        help="Target device type identification (can be given more than once)")
    if payload_type != "deb":
        parser.add_argument("-d", "--dest-dir", required=True,
                            help="Target destination directory where to deploy the update")
    parser.add_argument("--software-name",
                        help=f"Name of the key to store the software version: rootfs-image.NAME.version, instead "
                             f"of rootfs-image.{payload_type}.version")
    parser.add_argument("--software-version", help="Value for the software version, defaults to the Artifact name")
    parser.add_argument("--software-filesystem", help="If specified, is used instead of rootfs-image")
    parser.add_argument("-o", "--output-path", default=output, help=f"Path to output file. Default: {output}")
    parser.add_argument(what, nargs="+" if payload_type == "deb" else None, help=_HELP[payload_type])
    return parser


def main(name: str, argv: Sequence[str], write: Callable[[list[str]], int]) -> int:
    """Run the generator ``name`` with ``argv``; ``write`` runs ``pymender-artifact ARGS``."""
    argv = list(argv)
    passthrough: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, passthrough = argv[:at], argv[at + 1:]
    args = build_parser(name).parse_args(argv)
    payload_type, _, _ = GENERATORS[name]
    command = ["write", "module-image", "-T", payload_type]
    for device_type in args.device_types:
        command += ["-t", device_type]
    command += ["-o", args.output_path, "-n", args.artifact_name]
    for option in ("software_name", "software_version", "software_filesystem"):
        value = getattr(args, option)
        if value is not None:
            command += [f"--{option.replace('_', '-')}", value]
    with tempfile.TemporaryDirectory(prefix="pymender-gen-") as scratch:
        files = _payload(payload_type, args, Path(scratch))
        for path in files:
            command += ["-f", str(path)]
        code = write(command + passthrough)
    if code == 0:
        print(f"Artifact {args.output_path} generated successfully", file=sys.stderr)
    return code


def _dest_dir(value: str, *, root_ok: bool) -> str:
    if not value.startswith("/"):
        raise UsageError(f"the destination directory must be an absolute path, not {value!r}")
    if not root_ok and value.rstrip("/") == "":
        raise UsageError("the destination directory cannot be /", hint="the directory module replaces it whole")
    return value


def _payload(payload_type: str, args: argparse.Namespace, scratch: Path) -> list[Path]:
    """The payload files, in the order Mender's generator gives them to mender-artifact."""
    if payload_type == "single-file":
        source = Path(args.file)
        if not source.exists():
            raise InputError(f"the file {source} does not exist")
        if not source.is_file():
            raise UsageError(f"{source} is not a regular file")
        if source.name in ("dest_dir", "filename", "permissions"):
            raise UsageError(f"a file named {source.name!r} would be taken for the module's own settings",
                             hint="rename it")
        (scratch / "dest_dir").write_text(_dest_dir(args.dest_dir, root_ok=True) + "\n")
        (scratch / "filename").write_text(source.name + "\n")
        (scratch / "permissions").write_text(f"{stat.S_IMODE(source.stat().st_mode):o}\n")
        return [scratch / "dest_dir", scratch / "filename", scratch / "permissions", source]
    if payload_type == "directory":
        tree = Path(args.directory)
        if not tree.is_dir():
            raise InputError(f"{tree} is not a directory")
        dest = _dest_dir(args.dest_dir, root_ok=False)
        update = scratch / "update.tar"
        with tarfile.open(update, "w", format=tarfile.GNU_FORMAT) as tar:
            tar.add(tree, arcname=".")
        (scratch / "dest_dir").write_text(dest + "\n")
        return [update, scratch / "dest_dir"]
    packages = [Path(p) for p in args.package]
    for package in packages:
        if not package.is_file():
            raise InputError(f"the package {package} does not exist")
        if package.suffix != ".deb":
            raise UsageError(f"{package} is not a .deb package")
    return packages


def is_generator(argv: Sequence[str]) -> bool:
    return bool(argv) and argv[0] in GENERATORS


__all__ = ["GENERATORS", "build_parser", "is_generator", "main"]
