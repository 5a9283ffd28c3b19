"""The event log: what happened to VNs, NVEs and tenant systems, in order.

A bounded ring of recent events, each with a sequence number, so that REST
clients can page (``since``) and follow the log live.  Listeners are called
synchronously on record; they must not block (the app uses them to wake
long-polling requests and to count metrics).

The audit trail: while a write is carried out (:meth:`EventLog.acting`),
every event it records names who made it in its ``actor`` field (a token
or hypervisor name, ``config``, ``switch``; see commands.py).
"""

import collections
import contextlib

ATTACH = 'attach'
DETACH = 'detach'
MOVE = 'move'
CONFLICT = 'conflict'
FROZEN = 'frozen'
NVE_UP = 'nve-up'
NVE_DOWN = 'nve-down'
NVE_UNREACHABLE = 'nve-unreachable'
NVE_DELETED = 'nve-deleted'
VN_CREATED = 'vn-created'
VN_UPDATED = 'vn-updated'
VN_DELETED = 'vn-deleted'
VN_JOIN = 'vn-join'
VN_LEAVE = 'vn-leave'
AUDIT_REPAIR = 'audit-repair'
# BGP EVPN sessions (evpn.py); what their routes do to mapping entries and
# membership is told by the events above, with ``origin: evpn``.
BGP_UP = 'bgp-up'
BGP_DOWN = 'bgp-down'

TYPES = (ATTACH, DETACH, MOVE, CONFLICT, FROZEN, NVE_UP, NVE_DOWN,
         NVE_UNREACHABLE, NVE_DELETED, VN_CREATED, VN_UPDATED, VN_DELETED,
         VN_JOIN, VN_LEAVE, AUDIT_REPAIR, BGP_UP, BGP_DOWN)


class Counters(collections.Counter):
    """How often things happened, by name (``packet_in``,
    ``dropped_<reason>``, ``flow_mods``, ``rpc_requests_<method>_<outcome>``,
    ...): one per app, counted by whoever sees them, exposed by metrics."""


class EventLog:
    """Recent events, newest last."""

    def __init__(self, size=1000):
        self._ring = collections.deque(maxlen=size)
        self.seq = 0
        self.listeners = []
        self.actor = None            # who makes the write in progress

    @contextlib.contextmanager
    def acting(self, actor):
        """Every event recorded inside names ``actor`` as its maker."""
        outer, self.actor = self.actor, actor
        try:
            yield
        finally:
            self.actor = outer

    def record(self, now, kind, **fields):
        """Record an event of type ``kind`` at ``now`` with ``fields`` (and
        the actor of the write in progress); listeners are told at once.
        Returns the event."""
        self.seq += 1
        event = {'seq': self.seq, 'time': now, 'type': kind}
        if self.actor is not None:
            event['actor'] = self.actor
        event.update(fields)
        self._ring.append(event)
        for listener in self.listeners:
            listener(event)
        return event

    def since(self, seq=0, limit=None, kinds=None):
        """Events after sequence number ``seq`` (of ``kinds`` if given), oldest
        first; the newest ``limit`` if given."""
        out = [e for e in self._ring if e['seq'] > seq
               and (kinds is None or e['type'] in kinds)]
        return out[-limit:] if limit else out

    def __len__(self):
        return len(self._ring)
