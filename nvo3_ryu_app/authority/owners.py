"""Owners: the database record a set of flows on an NVE comes from.

* :class:`NveOwner`: the NVE's own table-miss flows, punt flows and meters;
* :class:`VnOwner`: a VN's context on one member NVE (tunnel and access
  classification, BUM replication to the other members, gateway);
* :class:`TsOwner`: one tenant-system attachment as one member NVE sees it.

The owner is the unit of recomputation (planner.py) and what a flow's cookie
names (:func:`cookie_for`), so a dump or trace reads back to the database.
Owners are named tuples (as small as tuples, hashable, equal by value) with
a ``kind`` class attribute; owners of different kinds have different
lengths, so they never compare equal.
"""

import functools
import zlib
from typing import NamedTuple

from . import pipeline as P

NVE, VN, TS = 'nve', 'vn', 'ts'
# Cookie bits 47..40 (docs/pipeline.md): which kind of record owns a flow.
KIND_BITS = {NVE: 1, VN: 2, TS: 3}


class NveOwner(NamedTuple):
    """An NVE's own flows and meters (one per NVE)."""

    kind = NVE


class VnOwner(NamedTuple):
    """A VN's flows on one of its member NVEs."""

    vnid: int
    kind = VN


class TsOwner(NamedTuple):
    """One tenant system's flows on one member NVE of its VN."""

    vnid: int
    mac: str
    kind = TS


@functools.lru_cache(maxsize=256)   # asked once per member NVE in turn
def cookie_for(owner):
    """App id | owner kind | CRC-32 of the owner's name (``ts:5001:02:..``):
    the same value for the same record across restarts and upgrades, so
    flows already on switches keep their cookies."""
    kind = owner.kind
    name = ':'.join([kind, *map(str, owner)]).encode()
    return (P.COOKIE_APP | (KIND_BITS[kind] << 40)
            | (zlib.crc32(name) & 0xFFFFFFFF))


__all__ = ['NveOwner', 'VnOwner', 'TsOwner', 'cookie_for', 'NVE', 'VN', 'TS']
