#!/usr/bin/env python3
"""Benchmark: the footprint of ``pymender daemon`` idling against a server, next to Debian's
``mender-client`` 3.4 daemon against the same server, in the same run.

Both daemons run against one test server (``tests/mender_server.py``, on 127.0.0.1) with the same
intervals (``UpdatePollIntervalSeconds`` and ``InventoryPollIntervalSeconds``, default 5 and 60
seconds: far more polling than a fleet would use), no deployment, for ``--duration`` seconds
(default 600). Every second the script samples each process's RSS (``VmRSS``), and at the end
reports per daemon: RSS after start-up and its maximum over the run, CPU time (user + system)
over the run, the number of voluntary context switches (each is one wakeup: a sleep that ended
or a wait that returned) per poll, and the requests the server saw.

pymender runs as ``pymender -c CONFIG daemon`` on a host-simulated device with an ECDSA device
key (generated before the run, so that key generation is not counted), from compiled bytecode.
Mender 3.4 runs in a private mount namespace (``unshare -m``) in which scratch directories are
bind-mounted on ``/usr/share/mender`` (its identity and inventory scripts) and ``/etc/mender``
(``artifact_info``); it generates its RSA key during the warm-up. Needs root, ``unshare`` and
``mender`` for the peer; otherwise its column is left out and the reason printed.

    python benchmarks/managed_footprint.py --duration 600 --workdir /tmp/fbench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from device_sim import SimDevice  # noqa: E402
from mender_server import MenderServer  # noqa: E402


def script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def proc_status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches", "Threads"):
            values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_pymender(work: Path, server: MenderServer, poll: int, inventory: int) -> subprocess.Popen[bytes]:
    host = work / "pymender-host"
    share = host / "usr-share-mender"
    script(share / "identity" / "mender-device-identity", "#!/bin/sh\necho mac=52:54:00:00:00:01\n")
    script(share / "inventory" / "mender-inventory-os", "#!/bin/sh\necho os=bench\n")
    device = SimDevice.create(work / "pymender-device", ServerURL=server.url, AllowPlainHTTPServer=True,
                              DeviceKeyType="ecdsa", UpdatePollIntervalSeconds=poll,
                              InventoryPollIntervalSeconds=inventory)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONPYCACHEPREFIX": str(work / "pycache"),
           "MENDER_DATA_DIR": str(share), "MENDER_CONF_DIR": str(host / "etc-mender"),
           "MENDER_DATASTORE_DIR": str(host / "var-lib-mender")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [sys.executable, "-c", "from pymender.cli.device import run; run()", "-c", str(device.config_path)]
    subprocess.run([sys.executable, "-c", "import pymender.device.managed.daemon, pymender.device.install"],
                   env=env, check=True)  # the bytecode cache, untimed
    from pymender.device.managed.devicekey import load_or_create

    load_or_create(device.data_dir, "ecdsa")
    return subprocess.Popen([*command, "-l", "warning", "daemon"], env=env, stderr=subprocess.DEVNULL)


def start_mender(work: Path, server: MenderServer, poll: int, inventory: int) -> subprocess.Popen[bytes] | str:
    if os.geteuid() != 0 or not shutil.which("mender") or not shutil.which("unshare"):
        return "needs root, unshare and Debian's mender-client"
    root = work / "mender"
    share, etc, data = root / "usr-share-mender", root / "etc-mender", root / "var-lib-mender"
    script(share / "identity" / "mender-device-identity", "#!/bin/sh\necho mac=52:54:00:00:00:02\n")
    script(share / "inventory" / "mender-inventory-os", "#!/bin/sh\necho os=bench\n")
    etc.mkdir(parents=True)
    (etc / "artifact_info").write_text("artifact_name=release-1\n")
    data.mkdir()
    (data / "device_type").write_text("device_type=qemux86-64\n")
    conf = root / "mender.conf"
    conf.write_text(json.dumps({"ServerURL": server.url, "UpdatePollIntervalSeconds": poll,
                                "InventoryPollIntervalSeconds": inventory, "RetryPollIntervalSeconds": poll,
                                "RootfsPartA": "/dev/null", "RootfsPartB": "/dev/zero"}))
    command = (f"mount --bind {share} /usr/share/mender && mount --bind {etc} /etc/mender && "
               f"exec mender -c {conf} -b {conf} -d {data} --no-syslog -l warning daemon")
    return subprocess.Popen(["unshare", "-m", "sh", "-c", command], stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--poll", type=int, default=5)
    parser.add_argument("--inventory", type=int, default=60)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ.update({"MENDER_CONF_DIR": str(work / "none"), "MENDER_DATASTORE_DIR": str(work / "none"),
                       "MENDER_DATA_DIR": str(work / "none")})
    with MenderServer() as server:
        daemons: dict[str, subprocess.Popen[bytes]] = {"pymender": start_pymender(work, server, args.poll,
                                                                                  args.inventory)}
        peer = start_mender(work, server, args.poll, args.inventory)
        if isinstance(peer, str):
            print(f"mender-client left out: {peer}")
        else:
            daemons["mender-client 3.4"] = peer
        try:
            time.sleep(args.warmup)
            start = {name: (cpu_seconds(p.pid), proc_status(p.pid)) for name, p in daemons.items()}
            requests_start = len(server.requests)
            peak = {name: status["VmRSS"] for name, (_, status) in start.items()}
            began = time.monotonic()
            while time.monotonic() - began < args.duration:
                time.sleep(1)
                for name, process in daemons.items():
                    peak[name] = max(peak[name], proc_status(process.pid)["VmRSS"])
            end = {name: (cpu_seconds(p.pid), proc_status(p.pid)) for name, p in daemons.items()}
            requests = len(server.requests) - requests_start
        finally:
            for process in daemons.values():
                process.terminate()
                process.wait(timeout=30)
    polls = args.duration / args.poll
    print(f"{args.duration:.0f} s of polling every {args.poll} s (inventory every {args.inventory} s), "
          f"after {args.warmup:.0f} s of warm-up; {requests} requests to the server in all; "
          f"violations of the API: {len(server.violations)}")
    print("| daemon | RSS after start-up | peak RSS | CPU over the run | wakeups per poll | threads |")
    print("|---|---|---|---|---|---|")
    for name in daemons:
        (cpu0, s0), (cpu1, s1) = start[name], end[name]
        wakeups = (s1["voluntary_ctxt_switches"] - s0["voluntary_ctxt_switches"]) / polls
        print(f"| {name} | {s0['VmRSS'] / 1024:.1f} MiB | {peak[name] / 1024:.1f} MiB | {cpu1 - cpu0:.2f} s | "
              f"{wakeups:.1f} | {s1['Threads']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
