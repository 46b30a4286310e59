"""``pymender-artifact``: write, read, validate, sign Mender Artifacts, and print a payload file.

The flags follow ``mender-artifact`` where they make sense, so build scripts can switch tools.
This module only parses arguments and prints; the work is done in :mod:`pymender.artifact`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from pymender import __version__
from pymender.artifact.reader import ArtifactReader, ReadOptions
from pymender.cli import module_gen
from pymender.cli.common import Parser, help_width, run_cli
from pymender.errors import InputError, UsageError

if TYPE_CHECKING:
    from pymender.artifact import builders, signing
    from pymender.artifact.model import ArtifactHeader

# The writer's modules, the key handling (and ``cryptography``) and even ``pathlib`` are
# imported by the commands that need them: reading and validating without a key, the common
# case on a build server's hot path, then start faster.

COMPRESSIONS = "none, gzip (default), lzma, zstd (zstd_fastest, zstd_fast, zstd_better, zstd_best)"


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=36, width=help_width())


def _common_write_options(parser: argparse.ArgumentParser, *, payload: bool = True) -> None:
    req = parser.add_argument_group("required")
    req.add_argument("-n", "--artifact-name", required=True, metavar="NAME",
                     help="name of the Artifact (its artifact_name provide)")
    req.add_argument("-t", "--device-type", "-c", "--compatible-types", dest="device_types",
                     action="append", required=True, metavar="TYPE",
                     help="device type the Artifact is for; repeat for several")
    opt = parser.add_argument_group("options")
    opt.add_argument("-o", "--output-path", default="artifact.mender", metavar="FILE",
                     help="where to write the Artifact (default: artifact.mender)")
    opt.add_argument("--compression", metavar="ALGO",
                     help=f"compression of the header and payload: {COMPRESSIONS}")
    opt.add_argument("-k", "--key", metavar="PRIVATE_KEY",
                     help="sign with this PEM private key (RSA, or ECDSA P-256; PKCS#1, SEC1 or PKCS#8)")
    opt.add_argument("-p", "--provides", action="append", default=[], metavar="KEY:VALUE",
                     help="add KEY:VALUE to the payload's artifact_provides")
    opt.add_argument("-d", "--depends", action="append", default=[], metavar="KEY:VALUE",
                     help="add KEY:VALUE to the payload's artifact_depends")
    opt.add_argument("--clears-provides", action="append", default=[], metavar="PATTERN",
                     help="provides (glob) this update removes from the device")
    opt.add_argument("-N", "--artifact-name-depends", action="append", default=[], metavar="NAME",
                     help="install only over one of these Artifacts; repeatable")
    opt.add_argument("-g", "--provides-group", metavar="GROUP", help="the group this Artifact provides")
    opt.add_argument("-G", "--depends-groups", action="append", default=[], metavar="GROUP",
                     help="install only on devices in one of these groups; repeatable")
    opt.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    opt.add_argument("--threads", type=int, metavar="N",
                     help="compression threads (default: all cores); output does not depend on it")
    if payload:
        opt.add_argument("-s", "--script", action="append", default=[], metavar="FILE",
                         help="add a state script (ArtifactInstall_Enter_10_name, ...); repeatable")
        opt.add_argument("--software-name", metavar="NAME",
                         help="version key becomes rootfs-image.NAME.version")
        opt.add_argument("--software-version", metavar="VERSION",
                         help="value of the version provide (default: the Artifact name)")
        opt.add_argument("--software-filesystem", metavar="NAME",
                         help="use NAME instead of rootfs-image as the version key's prefix")
        opt.add_argument("--no-default-software-version", action="store_true",
                         help="do not add the software version provide")
        opt.add_argument("--no-default-clears-provides", action="store_true",
                         help="do not add the default clears_provides patterns")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pymender-artifact",
        formatter_class=_formatter,
        description="Write, read, validate and sign Mender Artifacts (format version 3).",
        epilog=(
            "examples:\n"
            "  pymender-artifact write rootfs-image -n release-1 -t qemux86-64 -f rootfs.ext4 -o release-1.mender\n"
            "  pymender-artifact read release-1.mender\n"
            "  pymender-artifact validate -k public.pem release-1.mender\n"
            "  pymender-artifact sign -k private.pem release-1.mender\n"
            "  pymender-artifact single-file-artifact-gen -n app-1 -t qemux86-64 -d /opt/app app.conf\n\n"
            "exit codes: 0 success, 1 error, 2 bad usage, 3 cannot open an input,\n"
            "            4 invalid Artifact (or signature), 5 unsupported feature"
        ),
    )
    parser.add_argument("--version", action="version", version=f"pymender-artifact {__version__}")
    parser.add_argument("--compression", dest="global_compression", metavar="ALGO",
                        help="default compression for write (as upstream's global option)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    write = commands.add_parser("write", help="write an Artifact", formatter_class=_formatter,
                                description="Write an Artifact of one of the kinds below.")
    kinds = write.add_subparsers(dest="kind", metavar="KIND")
    rootfs = kinds.add_parser(
        "rootfs-image", help="a full root filesystem image", formatter_class=_formatter,
        description="Write an Artifact that installs a whole root filesystem image.",
        epilog="The payload is streamed: memory use does not depend on the image size.")
    _common_write_options(rootfs)
    rootfs.add_argument("-f", "--file", required=True, metavar="IMAGE",
                        help="the filesystem image (e.g. rootfs.ext4)")
    rootfs.add_argument("-v", "--version", dest="format_version", type=int, default=3,
                        metavar="N", help="Artifact format version (3, or 2 for old clients)")
    rootfs.add_argument("--no-checksum-provide", action="store_true",
                        help="do not add the rootfs-image.checksum provide")
    rootfs.add_argument("--legacy-rootfs-image-checksum", action="store_true",
                        help="name the checksum provide rootfs_image_checksum (old clients)")

    module = kinds.add_parser(
        "module-image", help="a payload for an Update Module", formatter_class=_formatter,
        description="Write an Artifact whose payload an Update Module installs.")
    _common_write_options(module)
    module.add_argument("-T", "--type", required=True, metavar="MODULE",
                        help="payload type: the name of the Update Module that installs it")
    module.add_argument("-f", "--file", action="append", default=[], metavar="FILE",
                        help="a payload file; repeatable (zero files is allowed)")
    module.add_argument("-m", "--meta-data", metavar="FILE",
                        help="JSON object passed to the Update Module as meta-data")

    bootstrap = kinds.add_parser(
        "bootstrap-artifact", help="an Artifact with no payload (seeds a device's provides)",
        formatter_class=_formatter,
        description="Write an Artifact with an empty payload: installing it only records its provides.")
    _common_write_options(bootstrap, payload=False)
    bootstrap.add_argument("-v", "--version", dest="format_version", type=int, default=3,
                           metavar="N", help="Artifact format version (default 3)")

    read = commands.add_parser("read", help="print what an Artifact contains", formatter_class=_formatter,
                               description="Read an Artifact, check every checksum and print its header.")
    read.add_argument("artifact", metavar="ARTIFACT", help="the Artifact, or - for standard input")
    read.add_argument("-k", "--key", action="append", default=[], metavar="PUBLIC_KEY",
                      help="report whether the signature verifies with this PEM public key")
    read.add_argument("--json", action="store_true", help="print the header as JSON")
    read.add_argument("--no-progress", action="store_true", help="accepted for compatibility")

    validate = commands.add_parser(
        "validate", help="check an Artifact's structure, checksums and signature",
        formatter_class=_formatter,
        description="Check an Artifact completely. With -k, it must be signed by that key.")
    validate.add_argument("artifact", metavar="ARTIFACT", help="the Artifact, or - for standard input")
    validate.add_argument("-k", "--key", action="append", default=[], metavar="PUBLIC_KEY",
                          help="require a signature that verifies with this PEM public key")

    sign = commands.add_parser(
        "sign", help="sign an Artifact", formatter_class=_formatter,
        description="Add a signature to an existing Artifact (validated first).")
    sign.add_argument("artifact", metavar="ARTIFACT")
    sign.add_argument("-k", "--key", required=True, metavar="PRIVATE_KEY",
                      help="PEM private key (RSA, or ECDSA P-256)")
    sign.add_argument("-o", "--output-path", metavar="FILE",
                      help="write the signed Artifact here (default: replace ARTIFACT)")
    sign.add_argument("-f", "--force", action="store_true", help="replace an existing signature")

    for generator, (payload_type, _, _) in module_gen.GENERATORS.items():
        commands.add_parser(generator, help=f"generate a {payload_type} Update Module Artifact (flags of "
                                            f"Mender's {generator})",
                            add_help=False)

    cat = commands.add_parser(
        "cat", help="print one payload file to standard output", formatter_class=_formatter,
        description="Write one payload file of an Artifact to standard output, checking its checksum.")
    cat.add_argument("artifact", metavar="ARTIFACT", help="the Artifact, or - for standard input")
    cat.add_argument("file", nargs="?", metavar="NAME",
                     help="the payload file's name (default: the only one)")
    return parser


def main(argv: Sequence[str]) -> int:
    if module_gen.is_generator(argv):
        return module_gen.main(argv[0], argv[1:], main)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "write":
        if args.kind is None:
            raise UsageError("write needs a kind: rootfs-image, module-image or bootstrap-artifact",
                             hint="see pymender-artifact write --help")
        return _write(args)
    if args.command == "read":
        return _read(args)
    if args.command == "validate":
        return _validate(args)
    if args.command == "sign":
        return _sign(args)
    if args.command == "cat":
        return _cat(args)
    raise UsageError(f"unknown command {args.command}")


# --- write ---------------------------------------------------------------------------------------


def _common(args: argparse.Namespace) -> builders.CommonOptions:
    from pathlib import Path

    from pymender.artifact import builders

    return builders.CommonOptions(
        name=args.artifact_name,
        device_types=args.device_types,
        provides=[builders.parse_key_value(v, "--provides") for v in args.provides],
        depends=[builders.parse_key_value(v, "--depends") for v in args.depends],
        clears_provides=args.clears_provides,
        depends_artifact_names=args.artifact_name_depends,
        provides_group=args.provides_group,
        depends_groups=args.depends_groups,
        scripts=[Path(s) for s in getattr(args, "script", [])],
        format_version=getattr(args, "format_version", 3),
    )


def _software(args: argparse.Namespace) -> builders.SoftwareOptions:
    from pymender.artifact import builders

    return builders.SoftwareOptions(
        software_name=args.software_name,
        software_version=args.software_version,
        software_filesystem=args.software_filesystem,
        no_default_software_version=args.no_default_software_version,
        no_default_clears_provides=args.no_default_clears_provides,
        no_checksum_provide=getattr(args, "no_checksum_provide", False),
        legacy_checksum=getattr(args, "legacy_rootfs_image_checksum", False),
    )


def _load_meta_data(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            value = json.load(handle)
    except OSError as err:
        raise InputError(f"cannot read meta-data file {path}: {err.strerror or err}") from None
    except ValueError as err:
        raise UsageError(f"meta-data file {path} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise UsageError(f"meta-data file {path} must hold a JSON object")
    return value


def _write(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pymender.artifact import builders, signing
    from pymender.artifact.writer import write_artifact
    from pymender.cli.progress import ProgressBar

    common = _common(args)
    if args.kind == "rootfs-image":
        if args.file.startswith("ssh://"):
            raise UsageError("snapshots over ssh are not supported",
                             hint="make an image file on the device and pass it with -f")
        spec = builders.rootfs_image(common, Path(args.file), _software(args))
    elif args.kind == "module-image":
        spec = builders.module_image(common, args.type, [Path(f) for f in args.file],
                                     _load_meta_data(args.meta_data), _software(args))
    else:
        spec = builders.bootstrap_artifact(common)
    signer = signing.load_signer(args.key) if args.key else None
    compression = args.compression or args.global_compression or "gzip"
    output = Path(args.output_path)
    if args.output_path == "-":
        raise UsageError("the Artifact must be written to a file", hint="give -o FILE")
    show = not args.no_progress and sys.stderr.isatty()
    with ProgressBar("Writing Artifact", enabled=show) as bar:
        write_artifact(spec, output, compression_name=compression, signer=signer,
                       threads=args.threads, progress=bar.update)
    if show:
        print(f"Wrote {output}", file=sys.stderr)
    return 0


# --- read / validate / cat --------------------------------------------------------------------


def _open_input(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as err:
        raise InputError(f"cannot open {path}: {err.strerror or err}") from None


def _verifiers(keys: list[str]) -> list[signing.Verifier]:
    if not keys:
        return []
    from pymender.artifact import signing

    return [signing.load_verifier(key) for key in keys]


def _signature_line(header: ArtifactHeader, keys: list[str]) -> str:
    if not header.signed:
        return "no signature"
    if not keys:
        return "signed but no key for verification provided; use -k to give one"
    if header.signature_verified:
        return "signed and verified correctly"
    return f"signed; verification using the given key failed ({header.signature_error})"


def _read(args: argparse.Namespace) -> int:
    verifiers = _verifiers(args.key)
    stream = _open_input(args.artifact)
    with stream:
        reader = ArtifactReader(stream, ReadOptions(verifiers=verifiers, require_signature=False))
        header = reader.read_header()
        files: list[dict[str, Any]] = []
        for payload in reader.payload_files():
            payload.drain()
            files.append({"payload": payload.index, "name": payload.name, "size": payload.size,
                          "modified": payload.mtime, "checksum": payload.sha256})
    if args.json:
        summary = header.to_dict()
        for entry in summary["payloads"]:
            entry["files"] = [f for f in files if f["payload"] == entry["index"]]
            for item in entry["files"]:
                del item["payload"]
        print(json.dumps(summary, indent=2))
        return 0
    _print_header(header, files, args.key)
    return 0


def _print_header(header: ArtifactHeader, files: list[dict[str, Any]], keys: list[str]) -> None:
    import datetime

    out = [
        "Mender Artifact:",
        f"  Name: {header.artifact_name}",
        "  Format: mender",
        f"  Version: {header.format_version}",
        f"  Signature: {_signature_line(header, keys)}",
        f"  Compatible devices: {', '.join(header.device_types)}",
        f"  Provides group: {header.artifact_group or ''}",
        f"  Depends on one of artifact(s): {', '.join(header.info.depends_artifact_names)}",
        f"  Depends on one of group(s): {', '.join(header.info.depends_groups)}",
        f"  State scripts: {', '.join(s.name for s in header.scripts)}",
        "",
        "Updates:",
    ]
    for payload in header.payloads:
        out.append(f"  {payload.index}:")
        out.append(f"    Type: {payload.type or 'empty (bootstrap)'}")
        out.append("    Provides:" + ("" if payload.provides else " nothing"))
        out.extend(f"      {k}: {v}" for k, v in sorted(payload.provides.items()))
        out.append("    Depends:" + ("" if payload.depends else " nothing"))
        out.extend(f"      {k}: {v}" for k, v in sorted(payload.depends.items()))
        out.append(f"    Clears provides: {json.dumps(payload.clears_provides)}")
        if payload.meta_data:
            out.append("    Metadata:")
            out.extend("      " + line for line in json.dumps(payload.meta_data, indent=2).splitlines())
        else:
            out.append("    Metadata: nothing")
        out.append("    Files:" + ("" if any(f["payload"] == payload.index for f in files) else " none"))
        for item in files:
            if item["payload"] != payload.index:
                continue
            when = datetime.datetime.fromtimestamp(item["modified"], datetime.timezone.utc)
            out.append(f"      name:     {item['name']}")
            out.append(f"      size:     {item['size']}")
            out.append(f"      modified: {when:%Y-%m-%d %H:%M:%S} UTC")
            out.append(f"      checksum: {item['checksum']}")
    print("\n".join(out))


def _validate(args: argparse.Namespace) -> int:
    verifiers = _verifiers(args.key)
    stream = _open_input(args.artifact)
    with stream:
        header = ArtifactReader(stream, ReadOptions(verifiers=verifiers)).validate()
    note = ""
    if header.signed and not verifiers:
        note = " (signed; signature not checked: no key given)"
    elif header.signature_verified:
        note = " (signature verified)"
    print(f"Artifact {args.artifact} is valid{note}")
    return 0


def _cat(args: argparse.Namespace) -> int:
    stream = _open_input(args.artifact)
    found = False
    out = sys.stdout.buffer
    with stream:
        reader = ArtifactReader(stream)
        header = reader.read_header()
        names = [name for payload in header.payloads for name in payload.files]
        wanted = args.file
        if wanted is None:
            if len(names) != 1:
                raise UsageError(f"the Artifact has {len(names)} payload files; name one",
                                 hint="files: " + (", ".join(names) or "none"))
            wanted = names[0]
        elif wanted not in names:
            raise UsageError(f"the Artifact has no payload file {wanted!r}",
                             hint="files: " + (", ".join(names) or "none"))
        for payload in reader.payload_files():
            if payload.name == wanted and not found:
                found = True
                while chunk := payload.read(1 << 20):
                    out.write(chunk)
    out.flush()
    return 0


# --- sign -----------------------------------------------------------------------------------


def _sign(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pymender.artifact import signing
    from pymender.artifact.sign import sign_artifact

    signer = signing.load_signer(args.key)
    source = Path(args.artifact)
    output = Path(args.output_path) if args.output_path else source
    sign_artifact(source, output, signer, force=args.force)
    print(f"Signed {output}", file=sys.stderr)
    return 0


def run() -> None:
    sys.exit(run_cli("pymender-artifact", main))


if __name__ == "__main__":  # pragma: no cover
    run()

