"""What the authority's decisions hand to the shim to send (besides flows).

Flow changes leave through each NVE's flow table (southbound); the other
thing a decision can produce is a frame to put on an NVE: a re-injected
first frame, an ARP probe of a move claim, a glean, a neighbour
advertisement.
"""

from dataclasses import dataclass


@dataclass
class PacketOut:
    """A frame for the app to send: out of ``actions`` on NVE ``dpid``."""

    dpid: int
    in_port: object
    data: bytes
    actions: list
