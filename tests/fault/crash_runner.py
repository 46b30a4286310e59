"""Run ``pymender`` and kill it with SIGKILL just before its N-th durable I/O step.

Usage: ``python crash_runner.py N COUNT_FILE PYMENDER-ARGS...``

The steps are the calls through which state reaches the disk: ``os.write``, ``os.pwrite``,
``os.ftruncate``, ``os.fsync``, ``os.replace`` and ``os.rename``, in whichever module makes them
(state store, bootloader environment, partition writer, script store, lock). Killing the process
just before step N leaves steps 0..N-1 done and nothing after, which is what a crash at that
instant leaves behind. With N < 0 nothing is killed and the number of steps is written to
COUNT_FILE, so a test can aim at every step. The product code has no hooks for this.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

STEPS = ("write", "pwrite", "ftruncate", "fsync", "replace", "rename")


def _arm(target: int, counter: list[int]) -> None:
    for name in STEPS:
        real: Callable[..., Any] = getattr(os, name)

        def step(*args: Any, _real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            if counter[0] == target:
                os.kill(os.getpid(), signal.SIGKILL)
            counter[0] += 1
            return _real(*args, **kwargs)

        setattr(os, name, step)


def main() -> int:
    target, count_file, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    from pymender.cli.common import run_cli
    from pymender.cli.device import main as pymender

    counter = [0]
    _arm(target, counter)
    code = run_cli("pymender", pymender, args)
    with open(count_file, "w", encoding="ascii") as out:
        out.write(str(counter[0]))
    return code


if __name__ == "__main__":
    sys.exit(main())
