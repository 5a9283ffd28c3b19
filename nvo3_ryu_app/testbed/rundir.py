"""Per-run naming and the run manifest.

Every run gets a short random prefix. Everything global that a run creates
carries it: the run directory ``/tmp/nvo3-<prefix>/`` and the network
namespace names ``nvo3-<prefix>-<node>``. Interfaces are created directly
inside those namespaces (never in the root namespace), so they die with them
and need no global name.

The manifest ``/tmp/nvo3-<prefix>/testbed.json`` records the owner process
(PID + start time, so PID reuse is detected) and every PID the run started,
so that ``nvo3-testbed cleanup`` can tell a crashed run from a live one and
kill exactly what the crashed run started.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
import threading
import time
from typing import Optional

from . import procs

RUN_ROOT = "/tmp"
DIR_PREFIX = "nvo3-"
MANIFEST = "testbed.json"
PREFIX_RE = re.compile(r"^[a-z0-9]{2,8}$")


def new_prefix() -> str:
    """4 random characters, not used by an existing run directory or namespace."""
    alphabet = string.ascii_lowercase + string.digits
    for _ in range(100):
        p = "".join(random.choice(alphabet) for _ in range(4))
        if not os.path.exists(run_dir(p)) and not procs.netns_list(netns_prefix(p)):
            return p
    raise RuntimeError("could not find a free run prefix")


def check_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix or ""):
        raise ValueError(f"run prefix must match {PREFIX_RE.pattern}, got {prefix!r}")
    return prefix


def run_dir(prefix: str) -> str:
    return os.path.join(RUN_ROOT, f"{DIR_PREFIX}{prefix}")


def netns_prefix(prefix: str) -> str:
    return f"{DIR_PREFIX}{prefix}-"


def netns_name(prefix: str, node: str) -> str:
    return f"{netns_prefix(prefix)}{node}"


class Manifest:
    """What a run started; rewritten atomically on every change.

    One Manifest object per run directory: a ControllerProcess started for a
    Testbed is handed the testbed's manifest instead of creating its own.
    """

    def __init__(self, prefix: str, kind: str = "testbed"):
        self.prefix = prefix
        self.path = os.path.join(run_dir(prefix), MANIFEST)
        os.makedirs(run_dir(prefix), exist_ok=True)
        me = os.getpid()
        self.data = {"prefix": prefix, "kind": kind, "owner_pid": me,
                     "owner_start": procs.proc_starttime(me), "created": time.time(),
                     "pids": [], "netns": []}
        self._lock = threading.Lock()    # NVEs start in parallel threads
        self.save()

    def add_pid(self, pid: Optional[int], what: str) -> None:
        if pid:
            with self._lock:
                self.data["pids"].append({"pid": pid, "start": procs.proc_starttime(pid),
                                          "what": what})
                self.save()

    def add_netns(self, name: str) -> None:
        with self._lock:
            self.data["netns"].append(name)
            self.save()

    def keep(self, why: str) -> None:
        """Keep the run directory for reading after the run (its processes
        and namespaces still go): ``cleanup`` leaves a kept directory
        unless asked for that run by name."""
        with self._lock:
            self.data["kept"] = why
            self.save()

    def save(self) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.data, fh, indent=1)
        os.replace(tmp, self.path)


def load(prefix: str) -> Optional[dict]:
    path = os.path.join(run_dir(prefix), MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt manifest: {exc}") from exc


def owner_alive(manifest: Optional[dict]) -> bool:
    """True while the process that created the run still runs."""
    if not manifest:
        return False
    pid = manifest.get("owner_pid")
    return procs.pid_alive(pid) and procs.proc_starttime(pid) == manifest.get("owner_start")
