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
NVE_REGISTERED = 'nve-registered'
BIND = 'bind'
UNBIND = 'unbind'
INTERCONNECT_CREATED = 'interconnect-created'
INTERCONNECT_UPDATED = 'interconnect-updated'
INTERCONNECT_DELETED = 'interconnect-deleted'
EXTERNAL_CREATED = 'external-created'
EXTERNAL_UPDATED = 'external-updated'
EXTERNAL_DELETED = 'external-deleted'
# A cluster of authorities: this instance became master or slave of an NVE
# (the switch confirmed it), or lost its etcd lease.
NVE_ROLE = 'nve-role'
LEASE_LOST = 'lease-lost'
# Announced migrations (authority/migrations.py).
MIGRATION_STARTED = 'migration-started'
MIGRATION_COMPLETED = 'migration-completed'
MIGRATION_CANCELLED = 'migration-cancelled'
MIGRATION_TIMED_OUT = 'migration-timed-out'
# BGP EVPN sessions (evpn.py); what their routes do to mapping entries and
# membership is told by the events above, with ``origin: evpn``.
BGP_UP = 'bgp-up'
BGP_DOWN = 'bgp-down'

TYPES = (ATTACH, DETACH, MOVE, CONFLICT, FROZEN, NVE_UP, NVE_DOWN,
         NVE_UNREACHABLE, NVE_DELETED, VN_CREATED, VN_UPDATED, VN_DELETED,
         VN_JOIN, VN_LEAVE, AUDIT_REPAIR, NVE_REGISTERED, BIND, UNBIND,
         INTERCONNECT_CREATED, INTERCONNECT_UPDATED, INTERCONNECT_DELETED,
         EXTERNAL_CREATED, EXTERNAL_UPDATED, EXTERNAL_DELETED, NVE_ROLE,
         LEASE_LOST, MIGRATION_STARTED, MIGRATION_COMPLETED,
         MIGRATION_CANCELLED, MIGRATION_TIMED_OUT, BGP_UP, BGP_DOWN)


class Counters(collections.Counter):
    """How often things happened, by name (``packet_in``,
    ``dropped_<reason>``, ``flow_mods``, ``rpc_requests_<method>_<outcome>``,
    ...): one per app, counted by whoever sees them, exposed by metrics.
    ``per_nve[dpid]`` counts what happened at one NVE (``packet_in``,
    ``audit_repairs``), for dashboards that show which NVE it was."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_nve = collections.defaultdict(collections.Counter)


class EventLog:
    """Recent events, newest last.

    ``seq`` goes on across restarts: the authority persists it with every
    commit that follows new events and starts the log after the stored
    value (persist.py), so a client's ``since`` never meets an old number
    reused for a new event."""

    def __init__(self, size=1000, seq=0):
        self._ring = collections.deque(maxlen=size)
        self.seq = seq
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
