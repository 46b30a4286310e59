"""Run one round of ``pymender daemon`` and kill it with SIGKILL just before its N-th durable
I/O step (see ``crash_runner.py`` for which calls count).

Usage: ``python daemon_crash_runner.py N COUNT_FILE CONFIG``

One round: the daemon starts (finishing the deployment it finds recorded), and when nothing is
left recorded, sends the inventory and polls once (running the deployment it gets). A reboot it
asks for ends the process with exit code 75 (:data:`REBOOTED`). With N < 0 nothing is killed and
the number of steps is written to COUNT_FILE.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from crash_runner import _arm

REBOOTED = 75


def main() -> int:
    target, count_file, config_file = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    from pymender.device.config import load_config
    from pymender.device.managed.daemon import Daemon

    counter = [0]

    def done(code: int) -> None:
        with open(count_file, "w", encoding="ascii") as out:
            out.write(str(counter[0]))
        os._exit(code)

    daemon = Daemon(load_config(config_file), reboot=lambda: done(REBOOTED),
                    source_options={"retries": 3, "backoff": 0.01, "timeout": 5.0, "sleep": lambda s: None})
    _arm(target, counter)
    daemon.start()
    if daemon.record is None:
        daemon.tick()
    done(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
