"""One NVE's OpenFlow channel as a state machine, in plain Python.

The app's shim (app.py) feeds an :class:`NveChannel` what the switch says
(its flow and meter dump, barrier replies, errors) and sends the abstract
messages it returns (:class:`FlowChange`, :class:`Barrier`,
:class:`FlowStatsRequest`, :class:`MeterConfigRequest`,
:class:`SendPacket`), encoded by ofwire.py.  What the channel keeps:

* the dump: on connect (and in audits) the NVE's flows and meters are
  requested; the parts are assembled, and the complete dump is handed to
  the NVE's flow table, which then sends only the difference (reconcile,
  never wipe); an audit reports and counts what differed;
* batching: at most ``flow_batch`` flow changes at a time, each batch
  closed by a barrier; the next batch leaves when the barrier reply
  arrives, which also advances the acknowledged sequence number
  (``applied_seq``) that REST and tests wait on;
* packet-outs wait until the flows they depend on were sent;
* transaction ids, allocated here in the upper half of the 32-bit space;
  the shim keeps os-ken's own (echo requests) in the lower half.
"""

import logging
from typing import NamedTuple

from ..authority import events as ev
from ..authority.messages import PacketOut
from .flowtable import MODIFY

LOG = logging.getLogger(__name__)

XID_FIRST = 0x80000000
XID_SPAN = 0x80000000


class FlowChange(NamedTuple):
    """Add, modify or delete one flow or meter (``item``) on the NVE."""

    xid: int
    op: str
    item: object


class Barrier(NamedTuple):
    """Ask the NVE to confirm it applied everything sent before."""

    xid: int


class FlowStatsRequest(NamedTuple):
    """Ask for the NVE's flows that carry our cookie."""

    xid: int


class MeterConfigRequest(NamedTuple):
    """Ask for the NVE's meters."""

    xid: int


class SendPacket(NamedTuple):
    """Put a frame on the NVE (a :class:`authority.messages.PacketOut`)."""

    xid: int
    packet: PacketOut


class NveChannel:
    """The channel state of one connected NVE.

    ``table`` is the NVE's flow table, ``counters`` the app's counters,
    ``event_log`` the authority's (audit repairs are recorded there) and
    ``expected`` a callable giving what a from-scratch computation says the
    NVE must hold (audit reports compare it with the table's desired state).
    """

    def __init__(self, dpid, table, counters, event_log, expected,
                 flow_batch=500):
        self.dpid = dpid
        self.table = table
        self.counters = counters
        self.event_log = event_log
        self.expected = expected
        self.flow_batch = flow_batch
        self.synced = False          # installed flows known (dump done)
        self.dumping = None          # {'flows': [...], 'meters': [...]}
        self.audit = False           # the running dump is an audit
        self.report = None           # called with the result of a dump
        self.barrier_xid = None
        self.inflight = {}           # xid -> (op, item) of the open batch
        self.requested_seq = 0
        self.applied_seq = 0
        self.outs = []               # packet-outs waiting for the flush
        self._xid = -1

    def next_xid(self):
        """A transaction id of this channel's range."""
        self._xid = (self._xid + 1) % XID_SPAN
        return XID_FIRST + self._xid

    # -- dumps: what the NVE holds (on connect, and in audits) --

    def start_dump(self, audit=False, report=None):
        """Request the NVE's flows and meters; None (nothing sent) while a
        dump runs, or for an audit while a batch is unacknowledged."""
        if self.dumping is not None or (audit and
                                        self.barrier_xid is not None):
            return None
        self.dumping = {'flows': None, 'meters': None}
        self.audit = audit
        self.report = report
        return [FlowStatsRequest(self.next_xid()),
                MeterConfigRequest(self.next_xid())]

    def dump_part(self, kind, items, more, now):
        """One part of the dump (``kind``: 'flows' or 'meters'; ``more``:
        more parts follow).  True when the dump is complete: the table
        then knows what the NVE holds, and the channel wants a flush."""
        dump = self.dumping
        if dump is None:
            return False
        got = dump[kind] or []
        got.extend(items)
        dump[kind] = got
        if more:
            return False
        dump[kind + '_done'] = True
        if dump.get('flows_done') and dump.get('meters_done'):
            self._dump_complete(now)
            return True
        return False

    def _dump_complete(self, now):
        installed = self.dumping['flows'] + self.dumping['meters']
        self.dumping = None
        table = self.table
        table.load_installed(installed)
        missing, stale, different = table.diff()
        if self.report is not None:
            self.report({
                'nve': '%016x' % self.dpid, 'installed': len(installed),
                'desired': len(table.desired),
                'desired_equals_recompute': self.expected() == table.desired,
                'missing': sorted(repr(k) for k in missing),
                'stale': sorted(repr(k) for k in stale),
                'different': sorted(repr(k) for k in different)})
            self.report = None
        repaired = len(missing) + len(stale) + len(different)
        counters = self.counters
        if self.audit:
            counters['audits'] += 1
            if repaired:
                counters['audit_repairs'] += repaired
                self.event_log.record(
                    now, ev.AUDIT_REPAIR, nve='%016x' % self.dpid,
                    missing=len(missing), stale=len(stale),
                    different=len(different))
                LOG.warning('audit of %016x: %d missing, %d stale, %d '
                            'different flows; repairing', self.dpid,
                            len(missing), len(stale), len(different))
        else:
            counters['sync_repairs'] += repaired
            LOG.info('NVE %016x synced: %d installed, %d missing, %d stale, '
                     '%d different', self.dpid, len(installed), len(missing),
                     len(stale), len(different))
        self.synced = True

    # -- sending --

    def queue_packet_out(self, out):
        """A frame to send at the next flush, after the flows before it."""
        self.outs.append(out)

    def flush(self):
        """The next batch of flow changes (closed by a barrier) if the
        channel may send one, then the packet-outs that may leave."""
        msgs = []
        if self.synced and self.dumping is None and self.barrier_xid is None:
            msgs = self._batch()
        # Flows already sent precede a packet-out on the channel; only
        # flows not sent yet make a frame wait.
        if self.outs and self.table.in_sync:
            outs, self.outs = self.outs, []
            msgs.extend(SendPacket(self.next_xid(), out) for out in outs)
        return msgs

    def _batch(self):
        changes = self.table.take_changes(limit=self.flow_batch)
        if not changes:
            return []
        self.requested_seq += 1
        msgs = []
        inflight = self.inflight
        for op, item in changes:
            xid = self.next_xid()
            inflight[xid] = (op, item)
            msgs.append(FlowChange(xid, op, item))
        self.counters['flow_mods'] += len(changes)
        barrier = Barrier(self.next_xid())
        self.barrier_xid = barrier.xid
        msgs.append(barrier)
        return msgs

    # -- replies --

    def barrier_reply(self, xid):
        """The NVE applied the open batch: True when it was ours (the
        channel then wants a flush)."""
        if xid != self.barrier_xid:
            return False
        self.barrier_xid = None
        self.inflight.clear()
        self.applied_seq = self.requested_seq
        return True

    def error(self, xid, kind, code, meter_exists=False):
        """The NVE refused a message; returns what to send about it.  A
        meter we did not know of (``meter_exists``) is taken over with a
        modify; anything else is counted and logged: the table believes
        the NVE holds what it refused, and the next audit's dump shows the
        difference and sends it again."""
        change = self.inflight.get(xid)
        if change is not None and meter_exists:
            return [FlowChange(self.next_xid(), MODIFY, change[1])]
        self.counters['of_errors'] += 1
        LOG.error('OFPErrorMsg from %016x type=%d code=%d for %r',
                  self.dpid, kind, code, change)
        return []

    # -- status --

    @property
    def in_sync(self):
        """Every change sent and acknowledged, nothing left to send."""
        return (self.synced and not self.table.pending
                and self.barrier_xid is None and self.dumping is None)

    def status(self):
        """The sync status REST shows (``/v1/sync``, the NVE view)."""
        pending = self.table.pending
        return {'connected': True, 'synced': self.synced,
                'requested_seq': self.requested_seq,
                'applied_seq': self.applied_seq, 'pending': pending,
                'in_sync': (self.synced and not pending
                            and self.barrier_xid is None
                            and self.dumping is None)}
