"""A fixed-schedule ICMP echo prober, for timing outages (moves, restarts).

Why not ``ping -i 0.01``: iputils ping sleeps *after* each send, so on these
machines its 10 ms schedule drifts to about 16 ms and the number of lost
packets no longer says how long an outage was.  This prober sends probe i at
``t0 + i * interval`` (absolute deadlines: a late send never shifts the
ones after it), from a raw ICMP socket, and takes every reply's arrival time
from the kernel (``SO_TIMESTAMPNS``, CLOCK_REALTIME, the same clock as the
send times).

It runs as a script inside a VM's network namespace, with Debian's python
and no project imports (the file system is shared by every namespace)::

    mnexec -a <vm pid> /usr/bin/python3 prober.py --dst 192.168.50.3 \\
        --interval 0.01 --duration 20 --out /tmp/.../probe.json

It stops by itself after ``--count`` probes or ``--duration`` seconds
(whichever comes first; one of them is required), or early on SIGINT/SIGTERM,
then waits ``--linger`` seconds for late replies and writes JSON::

    {"version": 1, "dst": ..., "interval": 0.01, "ident": ..., "started": t0,
     "ended": t, "stopped_early": false,
     "probes": [{"seq": 0, "sent": t, "rtt_ms": 0.41, "lost": false}, ...],
     "summary": {"sent": n, "received": n, "lost": n, "longest_gap_ms": x,...}}

``seq`` is the probe's index (the ICMP sequence number is ``seq & 0xffff``);
``sent`` is wall-clock seconds; ``rtt_ms`` is None for a lost probe.  A
line ``started <t0>`` on stdout tells the launcher the socket is open.

The analysis helpers (:func:`outages`, :func:`summary`, :func:`load`) and the
launcher (:func:`start`, :class:`ProberProcess`) are importable from the
package as well; the launcher uses only the standard library and mnexec.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

VERSION = 1
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)      # Linux, asm-generic
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
MAGIC = b"nvo3prb1"
DEFAULT_PYTHON = "/usr/bin/python3"      # Debian's python exists in every namespace


# -- the probing loop (runs in the namespace) ---------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(ident: int, seq: int, payload_len: int) -> bytes:
    payload = (MAGIC + struct.pack("!Q", seq)).ljust(max(payload_len, 16), b"\0")
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq & 0xFFFF)
    csum = _checksum(header + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, csum, ident, seq & 0xFFFF) + payload


def _parse_reply(data: bytes, ident: int):
    """(full seq from the payload or None, 16-bit seq) of our echo reply, else None."""
    if len(data) < 20:
        return None
    ihl = (data[0] & 0x0F) * 4
    icmp = data[ihl:]
    if len(icmp) < 8:
        return None
    kind, _code, _csum, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
    if kind != ICMP_ECHO_REPLY or rid != ident:
        return None
    payload = icmp[8:]
    full = None
    if payload[:len(MAGIC)] == MAGIC and len(payload) >= len(MAGIC) + 8:
        full = struct.unpack("!Q", payload[len(MAGIC):len(MAGIC) + 8])[0]
    return full, rseq


def _kernel_time(ancdata) -> float | None:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec / 1e9
    return None


def probe(dst: str, interval: float = 0.01, count: int | None = None,
          duration: float | None = None, linger: float = 1.0, ident: int | None = None,
          payload_len: int = 56, on_start=None) -> dict:
    """Send echo requests to ``dst`` on a fixed schedule; return the results dict."""
    if interval <= 0:
        raise ValueError("interval must be > 0")
    if count is None and duration is None:
        raise ValueError("give count or duration (the prober must stop by itself)")
    n = count if count is not None else int(duration / interval + 1e-9) + 1
    if duration is not None:
        n = min(n, int(duration / interval + 1e-9) + 1)
    ident = (os.getpid() if ident is None else ident) & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setblocking(False)

    stop = {"early": False}

    def _stop(_signum, _frame):
        stop["early"] = True

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    sent = []            # index -> send time
    rtt = {}             # index -> rtt seconds
    by_seq16 = {}        # 16-bit seq -> latest index with it
    dups = 0

    def drain():
        nonlocal dups
        while True:
            try:
                data, anc, _flags, addr = sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            if addr[0] != dst:
                continue
            parsed = _parse_reply(data, ident)
            if parsed is None:
                continue
            full, seq16 = parsed
            idx = full if full is not None and full < len(sent) else by_seq16.get(seq16)
            if idx is None:
                continue
            arrived = _kernel_time(anc) or time.time()
            if idx in rtt:
                dups += 1
                continue
            rtt[idx] = max(0.0, arrived - sent[idx])

    def drain_until(deadline, stoppable=True):
        """Take replies as they come until ``deadline`` (or a stop, when
        ``stoppable``: the final linger still waits for late replies)."""
        while not (stoppable and stop["early"]):
            wait = deadline - time.time()
            if wait <= 0:
                return
            try:
                ready, _, _ = select.select([sock], [], [], wait)
            except InterruptedError:
                ready = []
            if ready:
                drain()

    try:
        t0 = time.time() + 0.001
        if on_start is not None:
            on_start(t0)
        for i in range(n):
            drain_until(t0 + i * interval)
            if stop["early"]:
                break
            by_seq16[i & 0xFFFF] = i
            sent.append(time.time())
            try:
                sock.sendto(_echo_request(ident, i, payload_len), (dst, 0))
            except OSError:
                pass             # no route / unreachable: counted as lost
            drain()
        drain_until(time.time() + linger, stoppable=False)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sock.close()
    probes = [{"seq": i, "sent": round(t, 6),
               "rtt_ms": round(rtt[i] * 1000.0, 3) if i in rtt else None,
               "lost": i not in rtt} for i, t in enumerate(sent)]
    results = {"version": VERSION, "dst": dst, "interval": interval, "ident": ident,
               "started": round(t0, 6), "ended": round(time.time(), 6),
               "stopped_early": stop["early"], "duplicates": dups, "probes": probes}
    results["summary"] = summary(results)
    return results


# -- analysis (pure; usable on synthetic data) --------------------------------

def _probes(results):
    return results["probes"] if isinstance(results, dict) else list(results)


def _is_lost(p, max_rtt_ms):
    if p.get("lost") or p.get("rtt_ms") is None:
        return True
    return max_rtt_ms is not None and p["rtt_ms"] > max_rtt_ms


def outages(results, interval: float | None = None, max_rtt_ms: float | None = None):
    """Runs of consecutive lost probes: [(start, end, lost_count, duration_ms)].

    ``start`` is the send time of the first lost probe, ``end`` the send time
    of the first probe answered after the run (None when the run lasts to the
    end of the probing); ``duration_ms`` is ``end - start`` (for a run that
    never ended: ``lost_count * interval``), so on a perfect schedule it is
    ``lost_count * interval``.  ``results`` is a results dict or its probe
    list; ``interval`` defaults to the dict's.  A reply slower than
    ``max_rtt_ms`` (if given) counts as lost.
    """
    if interval is None:
        if not isinstance(results, dict):
            raise ValueError("interval is needed for a bare probe list")
        interval = results["interval"]
    probes = sorted(_probes(results), key=lambda p: p["seq"])
    out = []
    run = []
    for p in probes:
        if _is_lost(p, max_rtt_ms):
            run.append(p)
            continue
        if run:
            start, end = run[0]["sent"], p["sent"]
            out.append((start, end, len(run), round((end - start) * 1000.0, 3)))
            run = []
    if run:
        out.append((run[0]["sent"], None, len(run), round(len(run) * interval * 1000.0, 3)))
    return out


def percentile(values, q):
    """Linear interpolation between closest ranks (benchmarks use it too)."""
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summary(results, interval: float | None = None, max_rtt_ms: float | None = None) -> dict:
    """sent, received, lost, longest gap (ms; the longest outage, 0 if none),
    outage count, RTT p50/p95/max (ms) and send-schedule jitter (ms)."""
    probes = sorted(_probes(results), key=lambda p: p["seq"])
    if interval is None and isinstance(results, dict):
        interval = results.get("interval")
    got = [p["rtt_ms"] for p in probes if not _is_lost(p, max_rtt_ms)]
    gaps = outages(probes, interval, max_rtt_ms) if interval else []
    out = {"sent": len(probes), "received": len(got), "lost": len(probes) - len(got),
           "longest_gap_ms": max((g[3] for g in gaps), default=0.0),
           "outages": len(gaps),
           "rtt_p50_ms": _round(percentile(got, 0.5)),
           "rtt_p95_ms": _round(percentile(got, 0.95)),
           "rtt_max_ms": _round(max(got) if got else None)}
    if interval and len(probes) > 1:
        t0 = probes[0]["sent"]
        lag = [(p["sent"] - t0 - p["seq"] * interval) * 1000.0 for p in probes]
        out["send_lag_max_ms"] = _round(max(lag))
    return out


def _round(x):
    return None if x is None else round(x, 3)


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# -- launching it in a namespace ----------------------------------------------

class ProberProcess:
    """A prober running inside a namespace (see :func:`start`)."""

    def __init__(self, proc: subprocess.Popen, out: str, started: float):
        self.proc = proc
        self.out = out
        self.started = started          # t0 of the schedule (wall clock)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> dict:
        """Stop sending now (SIGINT), wait for the results and return them."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> dict:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        if self.proc.returncode != 0:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"prober exited {self.proc.returncode}: {err.strip()}")
        return load(self.out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def command(ns_pid: int, dst: str, out: str, interval: float = 0.01,
            count: int | None = None, duration: float | None = None, linger: float = 1.0,
            python: str = DEFAULT_PYTHON, realtime: bool = False) -> list:
    """The command line :func:`start` runs.  ``realtime``: the prober runs
    SCHED_FIFO (priority 10), as the OVN anchor's probe.py does, so that a
    busy machine delays its sends and its reading of replies less than the
    network it measures (when ``chrt`` is there and the kernel allows it)."""
    cmd = ["mnexec", "-a", str(ns_pid)]
    if realtime and realtime_allowed():
        cmd += ["chrt", "-f", str(RT_PRIORITY)]
    cmd += [python, os.path.abspath(__file__), "--dst", dst,
            "--interval", repr(interval), "--linger", repr(linger), "--out", out]
    if count is not None:
        cmd += ["--count", str(count)]
    if duration is not None:
        cmd += ["--duration", repr(duration)]
    return cmd


RT_PRIORITY = 10
_RT_ALLOWED = []


def realtime_allowed() -> bool:
    """Whether ``chrt -f`` works here (asked once)."""
    if not _RT_ALLOWED:
        try:
            ok = subprocess.run(["chrt", "-f", str(RT_PRIORITY), "true"],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
        except OSError:
            ok = False
        _RT_ALLOWED.append(ok)
    return _RT_ALLOWED[0]


def start(ns_pid: int, dst: str, out: str, interval: float = 0.01,
          count: int | None = None, duration: float | None = None, linger: float = 1.0,
          python: str = DEFAULT_PYTHON, timeout: float = 10.0,
          realtime: bool = False) -> ProberProcess:
    """Run this file with ``python`` in the namespace of ``ns_pid`` (mnexec -a)
    and return once its socket is open and its schedule started
    (``realtime``: see :func:`command`)."""
    cmd = command(ns_pid, dst, out, interval, count, duration, linger, python,
                  realtime)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("started "):
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        raise RuntimeError(f"prober did not start: {line!r} {proc.stderr.read().strip()}")
    return ProberProcess(proc, out, float(line.split()[1]))


# -- command line --------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dst", required=True, help="IPv4 address to probe")
    ap.add_argument("--interval", type=float, default=0.01, help="seconds between probes")
    ap.add_argument("--count", type=int, help="probes to send")
    ap.add_argument("--duration", type=float, help="seconds to probe for")
    ap.add_argument("--linger", type=float, default=1.0,
                    help="seconds to wait for late replies after the last probe")
    ap.add_argument("--ident", type=int, help="ICMP identifier (default: pid)")
    ap.add_argument("--size", type=int, default=56, help="ICMP payload bytes")
    ap.add_argument("--out", help="JSON results file (default: stdout)")
    args = ap.parse_args(argv)
    if args.count is None and args.duration is None:
        ap.error("give --count or --duration")

    def started(t0):
        print(f"started {t0:.6f}", flush=True)

    results = probe(args.dst, args.interval, args.count, args.duration, args.linger,
                    args.ident, args.size, on_start=started)
    text = json.dumps(results)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, args.out)
        s = results["summary"]
        print(f"sent {s['sent']} received {s['received']} lost {s['lost']} "
              f"longest gap {s['longest_gap_ms']} ms", flush=True)
    else:
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
