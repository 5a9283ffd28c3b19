"""Remove what killed testbed runs left behind -- ``mn -c`` limited to our prefix.

A run is identified by its prefix: run directory ``/tmp/nvo3-<prefix>/`` and
namespaces ``nvo3-<prefix>-*``. A run is *stale* when the owner recorded in
its manifest is gone (or there is no manifest, only namespaces). Live runs
are left alone unless asked for explicitly (``prefix=`` or ``force=True``):
another test session may be using them.

For a stale run we kill, and only kill:
* PIDs in its manifest whose start time still matches (no PID reuse victims);
* PIDs in pidfiles under its run directory whose command line names that
  directory (ovsdb-server, ovs-vswitchd);
* processes whose command line contains the run directory path (socat relays
  ``UNIX-LISTEN:<rundir>/...``, tcpdump ``-w <rundir>/...``, osken-manager
  ``--config-file <rundir>/...``);
* processes inside its namespaces (they can only have been started there by it);
then delete its namespaces (their veths go with them) and its run directory
(unless the run kept it for its app problems: ``Manifest.keep``; it goes only
when that run is named).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import procs, rundir

_DIR_RE = re.compile(r"^" + re.escape(rundir.DIR_PREFIX) + r"([a-z0-9]{2,8})$")
_NS_RE = re.compile(r"^" + re.escape(rundir.DIR_PREFIX) + r"([a-z0-9]{2,8})-.+$")


@dataclass
class RunInfo:
    prefix: str
    has_dir: bool = False
    netns: List[str] = field(default_factory=list)
    alive: bool = False


def find_runs() -> Dict[str, RunInfo]:
    runs: Dict[str, RunInfo] = {}
    for path in glob.glob(os.path.join(rundir.RUN_ROOT, rundir.DIR_PREFIX + "*")):
        m = _DIR_RE.match(os.path.basename(path))
        if m and os.path.isdir(path) and os.path.exists(os.path.join(path, rundir.MANIFEST)):
            runs.setdefault(m.group(1), RunInfo(m.group(1))).has_dir = True
    for ns in procs.netns_list(rundir.DIR_PREFIX):
        m = _NS_RE.match(ns)
        if m:
            runs.setdefault(m.group(1), RunInfo(m.group(1))).netns.append(ns)
    for info in runs.values():
        try:
            info.alive = rundir.owner_alive(rundir.load(info.prefix))
        except ValueError:
            info.alive = False
    return runs


def run_pids(prefix: str) -> List[int]:
    """Every live process that belongs to the run ``prefix`` (see module doc)."""
    d = rundir.run_dir(prefix)
    pids = set()
    try:
        manifest = rundir.load(prefix) or {}
    except ValueError:
        manifest = {}
    for entry in manifest.get("pids", []):
        if procs.pid_alive(entry["pid"]) and procs.proc_starttime(entry["pid"]) == entry["start"]:
            pids.add(entry["pid"])
    for pidfile in glob.glob(os.path.join(d, "**", "*.pid"), recursive=True):
        pid = procs.read_pidfile(pidfile)
        if pid and procs.pid_alive(pid) and d in procs.proc_cmdline(pid):
            pids.add(pid)
    pids.update(procs.pids_matching(d + "/"))
    for ns in procs.netns_list(rundir.netns_prefix(prefix)):
        pids.update(p for p in procs.netns_pids(ns) if procs.pid_alive(p))
    owner = manifest.get("owner_pid")
    pids.discard(owner)
    pids.discard(os.getpid())
    return sorted(pids)


def frr_dirs(prefix: str) -> List[str]:
    """FRR's per-namespace directories of run ``prefix`` (testbed/frr.py)."""
    return sorted(glob.glob("/etc/frr/%s*" % rundir.netns_prefix(prefix))
                  + glob.glob("/var/run/frr/%s*" % rundir.netns_prefix(prefix)))


def leftovers(prefix: str) -> Dict[str, list]:
    """What of run ``prefix`` still exists (empty lists = fully cleaned)."""
    d = rundir.run_dir(prefix)
    return {"netns": procs.netns_list(rundir.netns_prefix(prefix)),
            "pids": run_pids(prefix),
            "dirs": ([d] if os.path.exists(d) else []) + frr_dirs(prefix)}


def kept(prefix: str) -> Optional[str]:
    """Why run ``prefix``'s directory is kept (Manifest.keep), or None."""
    try:
        return (rundir.load(prefix) or {}).get("kept")
    except ValueError:
        return None


def cleanup_run(prefix: str, keep_kept: bool = False) -> Dict[str, list]:
    """Kill what run ``prefix`` left, delete its namespaces and directory
    (with ``keep_kept``, a directory kept for reading stays)."""
    rundir.check_prefix(prefix)
    found = leftovers(prefix)
    procs.kill_all(found["pids"])
    for ns in found["netns"]:
        procs.netns_delete(ns)
    for path in frr_dirs(prefix):
        shutil.rmtree(path, ignore_errors=True)
    if keep_kept and kept(prefix):
        found["dirs"] = []
    else:
        shutil.rmtree(rundir.run_dir(prefix), ignore_errors=True)
    return found


def cleanup(prefix: Optional[str] = None, force: bool = False, log=print) -> List[str]:
    """Clean stale runs (or the one ``prefix``; ``force`` includes live runs).

    Returns the prefixes cleaned.
    """
    runs = find_runs()
    if prefix is not None:
        targets = [prefix]
    else:
        targets = [p for p, info in sorted(runs.items()) if force or not info.alive]
        for p, info in sorted(runs.items()):
            if info.alive and not force:
                log(f"skipping live run {p} (owner still running; use --force)")
    for p in targets:
        # A directory kept for its app problems stays until asked for by name.
        keep = prefix is None and not force and bool(kept(p))
        if keep and not runs[p].netns and not run_pids(p):
            continue
        found = cleanup_run(p, keep_kept=keep)
        log(f"cleaned run {p}: {len(found['pids'])} processes, "
            f"{len(found['netns'])} namespaces, {len(found['dirs'])} directories")
    return targets
