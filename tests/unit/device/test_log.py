"""The device's log lines: through :mod:`logging` by default, straight to stderr for the command."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pymender.device import log


@pytest.fixture(autouse=True)
def _default_mode() -> Iterator[None]:
    log.use_logging()
    yield
    log.use_logging()


def test_lines_go_to_logging_by_default(caplog: pytest.LogCaptureFixture,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG, logger="pymender.device.example")
    logger = log.get_logger("pymender.device.example")
    logger.debug("d %s", 1)
    logger.info("i %s", 2)
    logger.warning("w %r", "x")
    logger.error("e")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("pymender.device.example", logging.DEBUG, "d 1"),
        ("pymender.device.example", logging.INFO, "i 2"),
        ("pymender.device.example", logging.WARNING, "w 'x'"),
        ("pymender.device.example", logging.ERROR, "e"),
    ]
    assert capsys.readouterr().err == ""


def test_write_to_stderr_prints_what_basic_config_would(caplog: pytest.LogCaptureFixture,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    log.write_to_stderr("info")
    logger = log.get_logger("pymender.device.example")
    logger.debug("not shown")
    logger.info("copied %d of %d", 3, 4)
    logger.warning("100% sure")  # no arguments: the message is not %-formatted
    logger.error("failed: %s", "why")
    assert capsys.readouterr().err == "INFO: copied 3 of 4\nWARNING: 100% sure\nERROR: failed: why\n"
    assert caplog.records == []


@pytest.mark.parametrize(("level", "shown"), [
    ("debug", ["DEBUG", "INFO", "WARNING", "ERROR"]),
    ("warning", ["WARNING", "ERROR"]),
    ("error", ["ERROR"]),
    ("critical", []),
])
def test_the_level_is_a_threshold(level: str, shown: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    log.write_to_stderr(level)
    logger = log.get_logger("x")
    for call in (logger.debug, logger.info, logger.warning, logger.error):
        call("m")
    assert capsys.readouterr().err == "".join(f"{name}: m\n" for name in shown)


def test_use_logging_switches_back(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO)
    log.write_to_stderr("info")
    log.use_logging()
    log.get_logger("pymender.device.example").info("to logging")
    assert [r.getMessage() for r in caplog.records] == ["to logging"]
    assert capsys.readouterr().err == ""
