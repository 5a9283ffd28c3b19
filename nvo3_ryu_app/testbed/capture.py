"""Packet captures on an NVE's underlay link, decoded with os_ken.lib.packet.

Why tcpdump -w + os-ken decoding rather than parsing tcpdump's text: tests
assert on fields (VNI, GRE key, inner MACs, ARP targets), and os-ken already
decodes VXLAN (UDP 4789), Geneve (UDP 6081) and GRE into the inner Ethernet
frame. The text
form stays available (``Capture.text()``) for humans.

A capture waits until tcpdump reports "listening" before returning from
``start()``, so traffic sent right after it is not missed, and runs tcpdump
with ``--immediate-mode``: otherwise libpcap's TPACKET_V3 ring hands packets
over only every second, and the SIGINT that ends the capture drops whatever
arrived in the last second ("7 received by filter, 0 captured").
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import List, Optional

from . import procs


@dataclass
class CapturedPacket:
    ts: float
    data: bytes
    _pkt: object = field(default=None, repr=False)

    @property
    def packet(self):
        """The os_ken Packet (outer headers followed by the inner ones)."""
        if self._pkt is None:
            from os_ken.lib.packet import packet as oskpacket
            self._pkt = oskpacket.Packet(self.data)
        return self._pkt

    @property
    def protocols(self) -> list:
        return [p for p in self.packet.protocols if not isinstance(p, (bytes, bytearray))]

    def names(self) -> List[str]:
        return [getattr(p, "protocol_name", type(p).__name__) for p in self.protocols]

    def first(self, name: str, inner: bool = False):
        """First header called ``name`` ("ipv4", "udp", "vxlan", "arp", ...);
        with ``inner=True`` only headers after the tunnel header count."""
        protos = self.inner_protocols if inner else self.protocols
        for p in protos:
            if getattr(p, "protocol_name", None) == name:
                return p
        return None

    @property
    def tunnel_header(self):
        for p in self.protocols:
            if getattr(p, "protocol_name", None) in ("vxlan", "geneve", "gre"):
                return p
        return None

    @property
    def inner_protocols(self) -> list:
        protos = self.protocols
        hdr = self.tunnel_header
        return protos[protos.index(hdr) + 1:] if hdr is not None else []

    @property
    def vni(self) -> Optional[int]:
        """The VXLAN or Geneve VNI."""
        hdr = self.first("vxlan") or self.first("geneve")
        return hdr.vni if hdr is not None else None

    @property
    def encap(self) -> Optional[str]:
        """"vxlan", "geneve" or "gre" (the VN encapsulation seen), or None."""
        hdr = self.tunnel_header
        return getattr(hdr, "protocol_name", None) if hdr is not None else None

    @property
    def gre_key(self) -> Optional[int]:
        hdr = self.first("gre")
        return hdr.key if hdr is not None else None

    @property
    def tunnel_key(self) -> Optional[int]:
        return self.vni if self.vni is not None else self.gre_key

    def __str__(self) -> str:
        return f"{self.ts:.6f} " + " / ".join(self.names())


class Capture:
    """tcpdump on one interface inside a namespace (identified by a PID in it)."""

    def __init__(self, ns_pid: int, ifname: str, path: str, bpf: str = ""):
        self.ns_pid = ns_pid
        self.ifname = ifname
        self.path = path
        self.bpf = bpf
        self.proc: Optional[subprocess.Popen] = None
        self.packets: List[CapturedPacket] = []

    def start(self, timeout: float = 5.0) -> "Capture":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        cmd = ["mnexec", "-a", str(self.ns_pid), "tcpdump", "-i", self.ifname, "-nn", "-U",
               "--immediate-mode",
               "-s", "0", "-Z", "root", "-w", self.path]
        if self.bpf:
            cmd.append(self.bpf)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.1)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                seen += chunk
                if b"listening on" in seen:
                    return self
                if not chunk:
                    break
            if self.proc.poll() is not None:
                break
        self.stop()
        raise procs.CommandError(f"tcpdump on {self.ifname} did not start: {seen.decode().strip()}")

    def stop(self, settle: float = 0.1) -> List[CapturedPacket]:
        """Stop tcpdump (SIGINT flushes the file) and decode what it saw.

        ``settle``: packets still in flight get this long to arrive first.
        """
        if self.proc is not None and self.proc.poll() is None:
            time.sleep(settle)
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                procs.kill_pid(self.proc.pid, sig=signal.SIGKILL, group=True)
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.packets = read_pcap(self.path)
        return self.packets

    def text(self) -> str:
        """tcpdump's own verbose rendering of the capture file."""
        return procs.run(["tcpdump", "-r", self.path, "-nn", "-e", "-v"], check=False).stdout

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def read_pcap(path: str) -> List[CapturedPacket]:
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    from os_ken.lib import pcaplib
    out = []
    with open(path, "rb") as fh:
        try:
            for ts, buf in pcaplib.Reader(fh):
                out.append(CapturedPacket(ts=ts, data=bytes(buf)))
        except Exception:  # a truncated last record (killed tcpdump) ends the list
            pass
    return out
