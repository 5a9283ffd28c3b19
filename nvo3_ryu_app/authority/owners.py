"""Owners: the database record a set of flows on an NVE comes from.

* :class:`NveOwner`: the NVE's own table-miss flows, punt flows and meters;
* :class:`VnOwner`: a VN's context on one member NVE (tunnel and access
  classification, BUM replication to the other members, gateway);
* :class:`TsOwner`: one tenant-system attachment as one member NVE sees it;
* :class:`IcOwner`: an interconnect's flows on its gateway and on the
  member NVEs of its two VNs (draft 4.3);
* :class:`IcHostOwner`: the route of one host across a routed
  interconnect, on the gateway;
* :class:`ExtOwner`: an external network's flows on its gateway.

The owner is the unit of recomputation (planner.py) and what a flow's cookie
names (:func:`cookie_for`), so a dump or trace reads back to the database;
every flow of an interconnect (its own and its hosts' routes) carries the
interconnect's cookie, so its counters on the gateway are its traffic.
Owners are named tuples (as small as tuples, hashable, equal by value) with
a ``kind`` class attribute; owners of different kinds differ in length or
in a constant field, so they never compare equal.
"""

import functools
import zlib
from typing import NamedTuple

from . import pipeline as P

NVE, VN, TS = 'nve', 'vn', 'ts'
IC, IC_HOST, EXT = 'ic', 'ic-host', 'ext'
# Cookie bits 47..40 (docs/pipeline.md): which kind of record owns a flow.
KIND_BITS = {NVE: 1, VN: 2, TS: 3, IC: 4, IC_HOST: 4, EXT: 5}


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


class IcOwner(NamedTuple):
    """An interconnect's flows on one NVE (its gateway, or a member NVE
    of one of its VNs)."""

    name: str
    tag: str = IC
    kind = IC


class IcHostOwner(NamedTuple):
    """The route into VN ``vnid`` to tenant system ``mac`` across routed
    interconnect ``name``, on its gateway."""

    name: str
    vnid: int
    mac: str
    kind = IC_HOST


class ExtOwner(NamedTuple):
    """An external network's flows on its gateway."""

    name: str
    tag: str = EXT
    kind = EXT


@functools.lru_cache(maxsize=256)   # asked once per member NVE in turn
def cookie_for(owner):
    """App id | owner kind | CRC-32 of the owner's name (``ts:5001:02:..``):
    the same value for the same record across restarts and upgrades, so
    flows already on switches keep their cookies.  An interconnect's host
    routes carry the interconnect's cookie (``ic:<name>``)."""
    kind = owner.kind
    if kind in (IC, IC_HOST, EXT):
        name = ('%s:%s' % (EXT if kind == EXT else IC, owner.name)).encode()
    else:
        name = ':'.join([kind, *map(str, owner)]).encode()
    return (P.COOKIE_APP | (KIND_BITS[kind] << 40)
            | (zlib.crc32(name) & 0xFFFFFFFF))


__all__ = ['NveOwner', 'VnOwner', 'TsOwner', 'IcOwner', 'IcHostOwner',
           'ExtOwner', 'cookie_for', 'NVE', 'VN', 'TS', 'IC', 'IC_HOST',
           'EXT']
