"""Small process and namespace helpers shared by the testbed modules.

Why this exists: the testbed must kill exactly the processes it started (never
by name), survive PID reuse, and find what a killed run left behind. Daemons
started with ``--detach`` are not our children, so waiting means polling
/proc (zombies count as dead: PID 1 here reaps late).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Iterable, List, Optional, Sequence

NETNS_DIR = "/run/netns"


class CommandError(RuntimeError):
    """A command the testbed relies on failed; the message carries its stderr."""


def run(cmd: Sequence[str], check: bool = True, timeout: float = 30,
        input: Optional[str] = None, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; raise CommandError on failure."""
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                             input=input, env=env)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    except FileNotFoundError as exc:
        raise CommandError(f"program not found: {cmd[0]} (run tools/install-deps.sh)") from exc
    if check and res.returncode != 0:
        raise CommandError(f"exit {res.returncode}: {' '.join(cmd)}\n{res.stderr.strip()}")
    return res


def proc_state(pid: int) -> Optional[str]:
    """The one-letter state of a process (R, S, Z, ...), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[0]


def proc_starttime(pid: int) -> Optional[int]:
    """Start time in clock ticks since boot (stable identity across PID reuse)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            data = fh.read()
    except OSError:
        return None
    return int(data.rsplit(")", 1)[1].split()[19])


def proc_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


def read_pidfile(path: str) -> Optional[int]:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return not pid_alive(pid)


def kill_pid(pid: Optional[int], expect: Optional[str] = None, timeout: float = 5.0,
             sig: int = signal.SIGTERM, group: bool = False) -> bool:
    """Stop one recorded process: ``sig``, then SIGKILL after ``timeout``.

    ``expect`` is a substring its command line must contain; a PID that was
    reused by an unrelated program is left alone. ``group`` signals the
    process group whose leader is ``pid`` (a relay and the children it forked).
    Returns True when the process is gone.
    """
    if not pid_alive(pid):
        return True
    if expect is not None and expect not in proc_cmdline(pid):
        return True
    send = (lambda s: os.killpg(pid, s)) if group else (lambda s: os.kill(pid, s))
    try:
        send(sig)
    except ProcessLookupError:
        return True
    if wait_dead(pid, timeout):
        return True
    try:
        send(signal.SIGKILL)
    except ProcessLookupError:
        return True
    return wait_dead(pid, 2.0)


def pids_matching(needle: str) -> List[int]:
    """Live (non-zombie) processes whose command line contains ``needle``."""
    out = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        if needle in proc_cmdline(pid) and pid_alive(pid):
            out.append(pid)
    return out


# -- named network namespaces ------------------------------------------------

def netns_attach(name: str, pid: int) -> None:
    """Give the network namespace of ``pid`` a name (``ip netns`` can see it)."""
    run(["ip", "netns", "attach", name, str(pid)])


def netns_list(prefix: str = "") -> List[str]:
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def netns_pids(name: str) -> List[int]:
    res = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def netns_delete(name: str) -> None:
    if name in netns_list(name):
        run(["ip", "netns", "delete", name], check=False)


def kill_all(pids: Iterable[int], timeout: float = 3.0) -> None:
    """SIGTERM every pid, then SIGKILL the survivors (pids all known to be ours)."""
    pids = [p for p in pids if pid_alive(p)]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.02)
    for p in pids:
        if pid_alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_in(pid: int, cmd: Sequence[str], check: bool = True, timeout: float = 30,
           env: Optional[dict] = None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run a command inside the network (and mount) namespace of ``pid``.

    Uses Mininet's ``mnexec -a`` rather than ``ip netns exec`` (which remounts
    /sys and is slower) and rather than the node's interactive shell (which
    serialises commands and cannot be shared between callers).
    """
    return run(["mnexec", "-a", str(pid), *cmd], check=check, timeout=timeout, env=env,
               input=input)
