"""The managed-mode commands shared by ``pymender`` and ``mender-update``: ``daemon`` runs the
daemon; ``check-update`` and ``send-inventory`` signal the running one (SIGUSR1, SIGUSR2), as
Mender's do. This module only dispatches; the work is in :mod:`pymender.device.managed`."""

from __future__ import annotations

from pymender.device.config import DeviceConfig
from pymender.errors import ManagedModeError

#: The commands and what they do.
COMMANDS = {
    "daemon": "run the daemon: poll the Mender server for updates and send the inventory",
    "check-update": "make the running daemon check for an update now",
    "send-inventory": "make the running daemon send the inventory now",
}
#: The signal each command sends (SIGUSR1 and SIGUSR2 on Linux; the signal module itself is
#: not imported on the standalone command paths).
_SIGNALS = {"check-update": "SIGUSR1", "send-inventory": "SIGUSR2"}


def run_managed(command: str, config: DeviceConfig) -> int:
    if not config.server_url:
        raise ManagedModeError(
            f"'{command}' needs a Mender server, and no server is configured (standalone mode)",
            hint="set ServerURL in mender.conf to use managed mode; install updates with 'install'")
    # Imported here: the daemon's modules (HTTP, TLS, cryptography) stay off the standalone paths.
    import signal

    from pymender.device.managed.daemon import Daemon, signal_daemon

    if command == "daemon":
        Daemon(config).run()
    else:
        signal_daemon(config.data_dir, getattr(signal, _SIGNALS[command]))
    return 0


__all__ = ["COMMANDS", "run_managed"]
