"""The underlay: one namespace with a Linux bridge ``br-ul`` and one veth per NVE.

Why a separate namespace with a plain Linux bridge: the underlay is "the IP
network between hypervisors"; it must not be OVS (so that nothing the app
programs can touch it), and each NVE's uplink must be a distinct interface so
that a capture on ``u-<nve>`` inside this namespace is exactly the traffic
that NVE put on (or received from) the wire.
"""

from __future__ import annotations

from mininet.node import Node

from . import procs

BRIDGE = "br-ul"


def underlay_ifname(nve_name: str) -> str:
    """Name (inside the underlay namespace) of the veth facing ``nve_name``."""
    return f"u-{nve_name}"[:15]


class UnderlayNode(Node):
    """A namespace holding the underlay bridge; IPv6 off so captures stay quiet."""

    def __init__(self, name: str, mtu: int = 1600, **params):
        super().__init__(name, inNamespace=True, **params)
        self.mtu = mtu
        procs.run_in(self.pid, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                                "net.ipv6.conf.default.disable_ipv6=1"])
        self.ns_batch([f"link add {BRIDGE} mtu {mtu} type bridge stp_state 0",
                       f"link set {BRIDGE} up", "link set lo up"])

    def ns_batch(self, lines) -> None:
        procs.run_in(self.pid, ["ip", "-batch", "-"], input="\n".join(lines) + "\n")

    def attach(self, ifname: str) -> None:
        """Enslave an (already moved-in) veth to br-ul."""
        self.ns_batch([f"link set {ifname} mtu {self.mtu}",
                       f"link set {ifname} master {BRIDGE}", f"link set {ifname} up"])
