"""A conformance Update Module for the tests: records every call and what it saw.

It appends one JSON line per call to ``$RECORDER_LOG``: the state, its arguments, the working
directory, the file tree (each file's bytes, FIFOs as ``<fifo>``) and, in Download, the bytes of
every stream. ``$RECORDER_BEHAVE`` (JSON) says how to behave: ``answers`` (state -> printed
line), ``fail`` (states that exit 1), ``hang`` (states that sleep forever), ``files`` (Download
returns without reading the streams), ``stop_after`` (in Download: bytes of the first stream
read before returning), ``skip_last`` (do not read stream-next's final empty read).
"""

import json
import os
import sys
import time

state, tree = sys.argv[1], sys.argv[2]
behave = json.loads(os.environ.get("RECORDER_BEHAVE", "{}"))


def listing(root):
    found = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, root)
            if os.path.isdir(path):
                found[rel + "/"] = None
            elif not os.path.isfile(path):
                found[rel] = "<fifo>"
            else:
                with open(path, "rb") as f:
                    found[rel] = f.read().decode("utf-8", "replace")
    return found


record = {"state": state, "argv": sys.argv[1:], "cwd": os.getcwd(), "tree": listing(tree)}
streams = {}
if state in ("Download", "DownloadWithFileSizes") and not behave.get("files"):
    while True:
        with open(os.path.join(tree, "stream-next"), "rb") as f:
            line = f.read().decode()
        if not line:
            break
        streams_line = line
        name = line.rstrip("\n").split(" ")[0]
        with open(os.path.join(tree, name), "rb") as f:
            if "stop_after" in behave:
                data = f.read(behave["stop_after"])
                streams[line] = data.decode("latin-1")
                record["streams"] = streams
                with open(os.environ["RECORDER_LOG"], "a") as log:
                    log.write(json.dumps(record) + "\n")
                sys.exit(0)
            data = f.read()
        streams[line] = data.decode("latin-1")
        if behave.get("skip_last"):
            break
    record["streams"] = streams
with open(os.environ["RECORDER_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")
if state in behave.get("hang", []):
    time.sleep(3600)
if state in behave.get("fail", []):
    sys.exit(1)
answer = behave.get("answers", {}).get(state)
if answer is not None:
    print(answer)
