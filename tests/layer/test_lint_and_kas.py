"""oelint-adv over the layer is clean, and every kas file matches kas's own schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

LAYER = REPO / "meta-pymender"
KAS_FILES = sorted((REPO / "kas").rglob("*.yml"))


@pytest.mark.parametrize("release", ["scarthgap", "wrynose"])
def test_oelint_adv_is_clean(release: str) -> None:
    files = [str(p.relative_to(LAYER)) for p in sorted(LAYER.rglob("*"))
             if p.suffix in {".bb", ".bbappend", ".bbclass", ".inc", ".conf"}]
    # Settings and every suppression, with its reason: meta-pymender/.oelint.cfg
    result = subprocess.run([sys.executable, "-m", "oelint_adv", "--release", release, "--quiet", *files],
                            cwd=LAYER, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        result.stdout + result.stderr


def test_oelint_config_documents_each_suppression() -> None:
    text = (LAYER / ".oelint.cfg").read_text()
    comments, _, settings = text.partition("[oelint]")
    suppressed = settings.split("suppress =")[1].split("constantmods")[0].split()
    assert suppressed
    for rule in suppressed:
        assert f"#   {rule} " in comments, f"{rule} is suppressed without a reason"


def test_there_are_kas_files() -> None:
    names = {p.relative_to(REPO / "kas").as_posix() for p in KAS_FILES}
    assert {"qemux86-64.yml", "qemuarm64.yml", "include/common.yml", "include/wrynose.yml"} <= names


@pytest.mark.parametrize("path", KAS_FILES, ids=lambda p: p.name)
def test_kas_file_matches_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    from kas import CONFIGSCHEMA

    validator = jsonschema.validators.validator_for(CONFIGSCHEMA)(CONFIGSCHEMA)
    config = yaml.safe_load(path.read_text())
    assert [e.message for e in validator.iter_errors(config)] == []
    for include in config["header"].get("includes", []):
        assert (REPO / include).is_file(), include


def test_kas_pins_commits() -> None:
    import yaml

    for path in KAS_FILES:
        for name, repo in (yaml.safe_load(path.read_text()).get("repos") or {}).items():
            if repo and "url" in repo or (repo and "branch" in repo):
                assert len(repo.get("commit", "")) == 40, f"{path.name}: {name} has no pinned commit"


def test_schema_rejects_a_typo() -> None:
    import jsonschema
    from kas import CONFIGSCHEMA

    validator = jsonschema.validators.validator_for(CONFIGSCHEMA)(CONFIGSCHEMA)
    assert list(validator.iter_errors({"header": {"version": 14}, "machin": "qemux86-64"}))


@pytest.mark.parametrize("machine", ["qemux86-64", "qemuarm64"])
def test_kas_files_say_how_to_boot_what_they_build(machine: str) -> None:
    import re

    text = (REPO / "kas" / f"{machine}.yml").read_text()
    comment = "\n".join(line[1:].strip() for line in text.splitlines() if line.startswith("#"))
    assert "meta-pymender/scripts/pymender-qemu" in comment
    assert (LAYER / "scripts" / "pymender-qemu").is_file()
    deploy = f"build/tmp-glibc/deploy/images/{machine}/core-image-minimal-{machine}.rootfs.sdimg"
    assert deploy in re.sub(r"\\\s+", "", comment)
    assert "/dev/vda" in comment
