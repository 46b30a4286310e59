"""What the three front ends share: the argument parser and the run wrapper."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import pytest

from pymender.cli import artifact, device, image
from pymender.cli.common import Parser, run_cli
from pymender.errors import UsageError


@pytest.mark.parametrize("build", [artifact.build_parser, device.build_parser, image.build_parser],
                         ids=["pymender-artifact", "pymender", "pymender-image"])
def test_every_front_end_parses_with_the_shared_parser(build: Callable[[], argparse.ArgumentParser]) -> None:
    parser = build()
    assert isinstance(parser, Parser)
    with pytest.raises(UsageError) as caught:
        parser.parse_args(["no-such-command"])
    assert caught.value.hint == f"see {parser.prog} --help"


def test_subcommands_report_usage_errors_too() -> None:
    parser = Parser(prog="tool")
    sub = parser.add_subparsers(dest="command").add_parser("go")
    sub.add_argument("--count", type=int)
    assert isinstance(sub, Parser)
    with pytest.raises(UsageError, match="invalid int value") as caught:
        parser.parse_args(["go", "--count", "many"])
    assert caught.value.hint == "see tool go --help"


@pytest.mark.parametrize(("tool", "code"), [("pymender", 1), ("pymender-artifact", 2), ("pymender-image", 2)])
def test_run_cli_prints_one_line_and_the_tool_s_exit_code(
    capsys: pytest.CaptureFixture[str], tool: str, code: int
) -> None:
    def main(argv: Sequence[str]) -> int:
        Parser(prog=tool).parse_args(list(argv))
        return 0

    assert run_cli(tool, main, ["--bogus"]) == code  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert err == f"{tool}: error: unrecognized arguments: --bogus (see {tool} --help)\n"
