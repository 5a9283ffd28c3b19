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
* packet-outs wait until the flows they depend on were sent, at most
  ``max_queued_packets`` of them (an NVE that never answers its dump would
  otherwise collect them without end); more are dropped and counted;
* failures: a change the NVE refused (an OpenFlow error) or that could not
  be encoded (ofwire.Unencodable, reported by the shim) is kept in
  ``failed`` and keeps the NVE out of sync (``in_sync`` means the NVE
  acknowledged everything it must hold and refused nothing of it) until a
  dump shows what it holds and the difference is sent again;
* liveness (:meth:`check_liveness`): an echo every ``nve_echo_interval``;
  an NVE that leaves an echo, a barrier or its dump (measured from its
  last reply part) unanswered for ``nve_reply_timeout`` is to be
  disconnected (it connects again and is dumped afresh), so that a switch
  that never answers neither stays "not in sync" for good nor keeps what
  waits for it;
* transaction ids, allocated here in the upper half of the 32-bit space;
  the shim keeps os-ken's own in the lower half;
* the OpenFlow role, in a cluster of authorities (southbound/cluster.py
  decides who masters the NVE): the role asked for and the one the switch
  confirmed, with its generation id.  A role request goes first on every
  connection (a fresh connection is EQUAL, and an equal controller may
  write); flow changes and packet-outs leave only while the service says
  so (``flush(allowed)``: the switch confirmed MASTER under the
  generation the cluster gave us, and the lease holds).  On becoming master
  the NVE is dumped afresh before anything is sent (another master may
  have written since the last dump: with identical views nothing is sent
  at all).  A generation the switch called stale is not asked again until
  a newer one comes.
* the stamp (southbound/stamp.py; alone, not in a cluster): on connect
  the NVE's stamp is asked for first; when it carries the digest of what
  the NVE must hold, the NVE is in sync without a dump (and *trusted*:
  unverified until an audit dumped it).  What an NVE must hold depends on
  which other NVEs are up (flood lists, routes), and after a restart they
  reconnect over seconds: a stamp that does not match yet is compared
  again at every flush until every NVE is connected (``settled``) or
  ``stamp_wait`` passed; then the NVE is dumped.  No stamp: dumped at
  once.  Once the
  NVE acknowledged everything it must hold, a stamp of that flow set is
  written in a batch of its own, at most once per ``stamp_interval``.
"""

import logging
from typing import NamedTuple

from ..authority import events as ev
from ..authority import oftext
from ..authority import pipeline as P
from ..authority.messages import PacketOut
from . import stamp
from .flowtable import ADD, DELETE, MODIFY

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


class EchoRequest(NamedTuple):
    """Ask the NVE to answer (liveness)."""

    xid: int


class FlowStatsRequest(NamedTuple):
    """Ask for the NVE's flows that carry our cookie."""

    xid: int


class StampRequest(NamedTuple):
    """Ask for the NVE's stamp (stamp.py): one flow of table STAMP."""

    xid: int


class MeterConfigRequest(NamedTuple):
    """Ask for the NVE's meters."""

    xid: int


class SendPacket(NamedTuple):
    """Put a frame on the NVE (a :class:`authority.messages.PacketOut`)."""

    xid: int
    packet: PacketOut


def differences(missing, stale, different, desired, held):
    """An audit's differences as people read them, in ovs-ofctl syntax:
    ``missing`` (the NVE lacks a flow it must hold), ``stale`` (it holds
    one of ours it must not), ``different`` (same table, priority and
    match, other actions or cookie: what it holds, then what it must)."""
    out = [{'change': 'missing', 'flow': oftext.item_text(desired[k])}
           for k in sorted(missing, key=repr)]
    out += [{'change': 'stale', 'flow': oftext.item_text(held[k])}
            for k in sorted(stale, key=repr)]
    out += [{'change': 'different', 'flow': oftext.item_text(held[k]),
             'want': oftext.item_text(desired[k])}
            for k in sorted(different, key=repr)]
    return out


class RoleRequest(NamedTuple):
    """Ask the switch for a role ('master', 'slave' or 'nochange') under a
    generation id."""

    xid: int
    role: str
    generation: int


class NveChannel:
    """The channel state of one connected NVE.

    ``table`` is the NVE's flow table, ``counters`` the app's counters,
    ``event_log`` the authority's (audit repairs are recorded there) and
    ``expected`` a callable giving what a from-scratch computation says the
    NVE must hold (audit reports compare it with the table's desired state).
    ``log`` takes what the NVE makes us log (a runtime/ratelog.py PeerLog
    in the app: bounded).
    """

    def __init__(self, dpid, table, counters, event_log, expected,
                 flow_batch=500, max_queued_packets=1024, log=LOG,
                 stamp_interval=0.0, stamp_wait=0.0):
        self.dpid = dpid
        self.table = table
        self.counters = counters
        self.event_log = event_log
        self.expected = expected
        self.flow_batch = flow_batch
        self.max_queued_packets = max_queued_packets
        self.log = log
        self.synced = False          # installed flows known (dump done)
        self.dumping = None          # {'flows': [...], 'meters': [...]}
        self.audit = False           # the running dump is an audit
        self.report = None           # called with the result of a dump
        self.barrier_xid = None
        self.inflight = {}           # xid -> (op, item) of the open batch
        self.requested_seq = 0
        self.applied_seq = 0
        self.outs = []               # packet-outs waiting for the flush
        # Changes the NVE refused or that could not be encoded: key ->
        # (op, item, reason).  The NVE does not hold what it must while
        # there are any: not in sync.
        self.failed = {}
        # Liveness (check_liveness): what we wait on and since when (the
        # clock check_liveness is given), the echo we wait on, and when the
        # last one was answered.
        self._waiting = None         # ((what, token), since)
        self._dump_parts = 0         # reply parts so far: progress
        self.echo_xid = None
        self.echo_sent = None
        self.last_echo = None
        self.dropped = False         # timed out: to be disconnected
        self._xid = -1
        # OpenFlow role (a cluster): confirmed by the switch, asked for,
        # and the largest generation it refused as stale.
        self.role = None             # (role, generation) confirmed
        self.asked = None            # (role, generation, xid) in flight
        self.stale_gen = -1
        self.want_dump = False       # dump before the next batch
        self._role_xids = {}         # recent role requests: xid -> generation
        self._dump_xid = 0           # the running dump's first request
        self._dump_stale = False     # the running dump predates mastership
        # The stamp (stamp.py): written once the NVE has had no flow
        # change nor stamp for stamp_interval seconds (0: never, and
        # connections dump); the digest the NVE is known to carry (None:
        # unknown), the one in flight, its xids.
        self.stamp_interval = stamp_interval
        self.stamp_wait = stamp_wait
        self.stamped = None
        self.awaiting = None         # (stamp read, until when) to compare
        self._stamping = None        # (digest, flow-mod xid, barrier xid)
        self._stamp_at = None
        self._changed_at = None      # when the last flow batch was sent
        self.trusted = False         # in sync by its stamp, not yet dumped

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
        first = FlowStatsRequest(self.next_xid())
        self._dump_xid = first.xid
        return [first, MeterConfigRequest(self.next_xid())]

    def start_stamp_check(self, now):
        """Ask for the NVE's stamp (on connect, instead of a dump)."""
        self.dumping = {'stamp': [], 'until': now + self.stamp_wait}
        self.audit = False
        self.report = None
        return [StampRequest(self.next_xid())]

    def dump_part(self, kind, items, more, now):
        """One part of the dump (``kind``: 'flows' or 'meters'; ``more``:
        more parts follow).  True when the dump is complete: the table
        then knows what the NVE holds, and the channel wants a flush."""
        dump = self.dumping
        if dump is None:
            return False
        self._dump_parts += 1        # it answers: progress
        if 'stamp' in dump:
            if kind != 'flows':
                return False
            dump['stamp'].extend(items)
            return False if more else self._stamp_checked()
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

    def _stamp_checked(self):
        """The stamp came: compared at the next flush (:meth:`compare_stamp`);
        without one, the NVE is dumped."""
        found = stamp.stamp_of(self.dumping['stamp'])
        until = self.dumping['until']
        self.dumping = None
        self.stamped = found
        if found is None:
            self.counters['stamp_mismatches'] += 1
            LOG.info('NVE %016x carries no stamp: dumping it', self.dpid)
            self.want_dump = True
        else:
            self.awaiting = (found, until)
        return True

    def compare_stamp(self, now, settled):
        """Compare the stamp read with the digest of what the NVE must
        hold now: equal, the NVE is in sync (trusted); not equal once
        ``settled`` (every NVE connected: nothing more will change it) or
        ``stamp_wait`` after the request, it is to be dumped."""
        found, until = self.awaiting
        if found == self.table.digest():
            self.awaiting = None
            self.table.assume_installed()
            self.failed = {}
            self.synced = self.trusted = True
            self.counters['stamp_matches'] += 1
            LOG.info('NVE %016x synced by its stamp %016x (to be verified '
                     'by an audit)', self.dpid, found)
        elif settled or now >= until:
            self.awaiting = None
            self.counters['stamp_mismatches'] += 1
            LOG.info('NVE %016x: its stamp %016x is not the digest of what '
                     'it must hold: dumping it', self.dpid, found)
            self.want_dump = True

    def _dump_complete(self, now):
        installed = self.dumping['flows'] + self.dumping['meters']
        self.dumping = None
        self.trusted = False         # dumped: what it holds is known
        if self._dump_stale:
            # Asked before we became master: another master may have
            # written since.  Ask again (flush sends it).
            self._dump_stale = False
            self.want_dump = True
            return
        # The dump is the whole truth: what failed before is compared (and
        # sent) again.
        self.failed = {}
        table = self.table
        table.load_installed(installed)
        missing, stale, different = table.diff()
        if self.report is not None:
            desired, held = table.desired, table.installed
            self.report({
                'nve': '%016x' % self.dpid, 'installed': len(installed),
                'desired': len(desired),
                'desired_equals_recompute': self.expected() == desired,
                'missing': sorted(repr(k) for k in missing),
                'stale': sorted(repr(k) for k in stale),
                'different': sorted(repr(k) for k in different),
                'differences': differences(missing, stale, different,
                                           desired, held)})
            self.report = None
        repaired = len(missing) + len(stale) + len(different)
        counters = self.counters
        if self.audit:
            counters['audits'] += 1
            if repaired:
                counters['audit_repairs'] += repaired
                per_nve = getattr(counters, 'per_nve', None)
                if per_nve is not None:
                    per_nve[self.dpid]['audit_repairs'] += repaired
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
        """A frame to send at the next flush, after the flows before it;
        False (dropped and counted) when ``max_queued_packets`` wait
        already."""
        if len(self.outs) >= self.max_queued_packets:
            self.counters['packet_outs_dropped'] += 1
            return False
        self.outs.append(out)
        return True

    def flush(self, allowed=True, now=None, settled=False):
        """The next batch of flow changes (closed by a barrier) if the
        channel may send one, then the packet-outs that may leave.
        ``allowed``: whether this instance may write to the NVE now (in a
        cluster: master, confirmed, lease valid); when not, nothing is
        sent and waiting packet-outs are dropped (counted).  ``now``: the
        time, when a stamp may be written (:meth:`stamp_wanted`) or
        compared (:meth:`compare_stamp`, with ``settled``)."""
        if self.awaiting is not None and now is not None:
            self.compare_stamp(now, settled)
        if not allowed:
            if self.outs:
                self.counters['packet_outs_dropped'] += len(self.outs)
                self.outs = []
            return []
        if self.want_dump and self.dumping is None:
            self.want_dump = False
            return self.start_dump()
        msgs = []
        if self.synced and self.dumping is None and self.barrier_xid is None:
            msgs = self._batch()
            if msgs and now is not None:
                self._changed_at = now
            elif now is not None and self.stamp_wanted(now):
                msgs = self._stamp(now)
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
        if self.failed:              # sent again: no longer failed
            for _, item in changes:
                self.failed.pop(item.key, None)
        self.counters['flow_mods'] += len(changes)
        barrier = Barrier(self.next_xid())
        self.barrier_xid = barrier.xid
        msgs.append(barrier)
        return msgs

    def stamp_wanted(self, now):
        """Whether a stamp is to be written: the NVE acknowledged all it
        must hold and refused nothing, its stamp says otherwise, and it has
        been quiet (no flow change, no stamp) for ``stamp_interval`` since
        its last stamp of this session.  A
        stamp written under churn would not match at a restart anyway, as
        the next change follows it: on a busy fleet, pacing stamps cost a
        flow-mod and a barrier per NVE and second for nothing."""
        if not self.stamp_interval or self._stamping is not None or \
                not self.in_sync:
            return False
        if self._stamp_at is not None:
            # The first stamp of a session waits for nothing more.
            for then in (self._stamp_at, self._changed_at):
                if then is not None and now - then < self.stamp_interval:
                    return False
        return self.table.digest() != self.stamped

    def _stamp(self, now):
        # A batch of its own, after the barrier of the flows it vouches
        # for: a switch may reorder what a barrier does not separate.
        digest = self.table.digest()
        change = FlowChange(self.next_xid(), ADD, P.stamp_flow(digest))
        barrier = Barrier(self.next_xid())
        self._stamping = (digest, change.xid, barrier.xid)
        self._stamp_at = now
        self.counters['stamp_writes'] += 1
        return [change, barrier]

    # -- the OpenFlow role (a cluster) --

    def ask_role(self, role, generation):
        """The role request to send for ``(role, generation)``, or []: it
        is confirmed or asked already, or the switch called that generation
        stale (our view is behind: wait for a newer one)."""
        if generation <= self.stale_gen:
            return []
        if self.role == (role, generation) or (
                self.asked is not None and self.asked[:2] == (role,
                                                              generation)):
            return []
        if self.role is not None and self.role[0] == 'master' and \
                role != 'master':
            self.role = None         # no more writes from here on
        req = RoleRequest(self.next_xid(), role, generation)
        self.asked = (role, generation, req.xid)
        self._role_xids[req.xid] = generation
        if len(self._role_xids) > 16:
            del self._role_xids[min(self._role_xids)]
        return [req]

    def role_reply(self, role, generation):
        """The switch confirmed ``role`` under ``generation``.  Returns
        True when this makes us its master (the channel then dumps the
        NVE before it sends anything)."""
        was = self.role
        self.role = (role, generation)
        asked_xid = None
        if self.asked is not None and self.asked[:2] == (role, generation):
            asked_xid = self.asked[2]
            self.asked = None
        if role == 'master' and (was is None or was[0] != 'master'):
            self.synced = False
            if self.dumping is None:
                self.want_dump = True
            elif asked_xid is None or self._dump_xid < asked_xid:
                # Asked before the switch made us master (a switch answers
                # in order: a dump asked after the request is current).
                self._dump_stale = True
            return True
        return False

    def role_refused(self, xid):
        """The switch refused our role request ``xid`` as stale: another
        instance used a larger generation than we know of (or we asked
        again before it answered).  True when it was one of ours."""
        generation = self._role_xids.pop(xid, None)
        if generation is None:
            return False
        self.stale_gen = max(self.stale_gen, generation)
        if self.asked is not None and self.asked[2] == xid:
            self.asked = None
            self.role = None
        return True

    def not_master(self):
        """The switch refused a write: it says we are not its master
        (another instance took over).  Nothing more is sent."""
        self.role = None
        self.asked = None

    def is_master(self, generation):
        """Whether the switch confirmed us as master under
        ``generation``."""
        return self.role == ('master', generation)

    # -- replies --

    def barrier_reply(self, xid):
        """The NVE applied the open batch: True when it was ours (the
        channel then wants a flush)."""
        if self._stamping is not None and xid == self._stamping[2]:
            self.stamped, self._stamping = self._stamping[0], None
            return False
        if xid != self.barrier_xid:
            return False
        self.barrier_xid = None
        self.inflight.clear()
        self.applied_seq = self.requested_seq
        return True

    def error(self, xid, kind, code, meter_exists=False):
        """The NVE refused a message; returns what to send about it.  A
        meter we did not know of (``meter_exists``) is taken over with a
        modify.  A refused change is counted, logged and kept in
        ``failed``: the NVE does not hold what it must (out of sync,
        visible); the next audit's dump shows the difference and sends it
        again.  Any other error is counted and logged."""
        if self._stamping is not None and xid == self._stamping[1]:
            # A switch without table STAMP: no stamps for it (it is dumped
            # on every connection, as before).
            self.counters['stamp_refused'] += 1
            self.log.warning('NVE %016x refused its stamp (OFPErrorMsg '
                             'type=%d code=%d): not stamped any more',
                             self.dpid, kind, code)
            self.stamp_interval = 0
            self._stamping = None
            return []
        change = self.inflight.get(xid)
        if change is not None and meter_exists:
            return [FlowChange(self.next_xid(), MODIFY, change[1])]
        self.counters['of_errors'] += 1
        if change is not None:
            self._failed_change(change[0], change[1], 'OFPErrorMsg type=%d '
                                'code=%d for %r' % (kind, code, change),
                                refused=True)
        else:
            self.log.error('OFPErrorMsg from %016x type=%d code=%d',
                           self.dpid, kind, code)
        return []

    def unencodable(self, xid, reason):
        """Change ``xid`` of the open batch could not be encoded (the shim
        left it out of the batch it sent): it was never sent, and the NVE
        will not hold it."""
        change = self.inflight.pop(xid, None)
        if change is None:
            return
        self.counters['flow_mods'] -= 1
        self._failed_change(change[0], change[1], reason)

    def _failed_change(self, op, item, reason, refused=False):
        """A change the NVE will not hold: counted, logged, and the NVE out
        of sync until a dump shows what it holds.  A delete that cannot be
        encoded removes nothing the NVE could hold (its match could not
        have been installed either)."""
        self.counters['flow_mods_refused' if refused else
                      'flow_mods_unencodable'] += 1
        self.log.error('NVE %016x: %s', self.dpid, reason)
        if op == DELETE and not refused:
            self.failed.pop(item.key, None)
        else:
            self.failed[item.key] = (op, item, reason)

    # -- liveness --

    def check_liveness(self, now, echo_interval, reply_timeout,
                       can_send=True):
        """Echo the NVE every ``echo_interval`` seconds, and see whether it
        left an echo, a barrier or its dump unanswered for longer than
        ``reply_timeout`` (0 turns either off).  ``now`` is the clock of
        every call of this method and :meth:`echo_reply` (the app's is a
        monotonic one: a wall-clock step must not drop a fleet); what is
        waited on is noted here, so a reply counts as progress from the
        first check that sees it.  ``can_send``: False while the NVE's send
        queue is full (no echo then).

        Returns ``(messages, overdue)``: the echo request to send, and None
        or ``(what, seconds)`` when the NVE is to be disconnected (counted;
        said once)."""
        if self.dropped:
            return [], None
        if self.dumping is not None:
            token = ('dump', self._dump_parts)
        elif self.barrier_xid is not None:
            token = ('barrier', self.barrier_xid)
        else:
            token = None
        if token is None:
            self._waiting = None
        elif self._waiting is None or self._waiting[0] != token:
            self._waiting = (token, now)
        waits = []
        if self._waiting is not None:
            waits.append((self._waiting[1], self._waiting[0][0]))
        if self.echo_sent is not None:
            waits.append((self.echo_sent, 'echo'))
        if reply_timeout > 0 and waits:
            since, what = min(waits)
            if now - since > reply_timeout:
                self.dropped = True
                self.counters['nve_reply_timeouts'] += 1
                return [], (what, now - since)
        if self.last_echo is None:
            self.last_echo = now
        if echo_interval > 0 and self.echo_xid is None and can_send and \
                now - self.last_echo >= echo_interval:
            self.echo_xid, self.echo_sent = self.next_xid(), now
            return [EchoRequest(self.echo_xid)], None
        return [], None

    def echo_reply(self, xid, now):
        """The NVE answered echo ``xid`` at ``now`` (check_liveness's
        clock)."""
        if xid == self.echo_xid:
            self.echo_xid = self.echo_sent = None
            self.last_echo = now

    # -- status --

    @property
    def acknowledged(self):
        """Every change sent was answered and nothing is left to send
        (whether or not the NVE took them all: see ``failed``)."""
        return (self.synced and not self.table.pending
                and self.barrier_xid is None and self.dumping is None)

    @property
    def in_sync(self):
        """The NVE acknowledged everything it must hold, and refused
        nothing of it (nothing failed to encode either)."""
        return self.acknowledged and not self.failed

    def status(self):
        """The sync status REST shows (``/v1/sync``, the NVE view)."""
        return {'connected': True, 'synced': self.synced,
                'requested_seq': self.requested_seq,
                'applied_seq': self.applied_seq,
                'pending': self.table.pending, 'failed': len(self.failed),
                'in_sync': self.in_sync, 'verified': not self.trusted,
                # Its stamp is the digest of what it must hold (a restart
                # now would find it in sync without a dump).
                'stamped': bool(self.stamp_interval) and self.synced
                and self.stamped == self.table.digest()}
