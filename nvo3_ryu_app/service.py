"""The fleet-level loop body of the app, in plain Python (no os-ken).

:class:`Service` owns the authority, the NVEs' flow tables and channels,
move/attach convergence timing and the counters.  The os-ken shim (app.py)
hands it each event with the time (a packet-in, a switch's reply, a command
from REST or the RPC, a timer tick) and sends what it returns; unit tests
drive exactly the same code against simulated switches.

Sending happens at the drain: :meth:`sync` first makes every change so far
durable (one fsync for all of them: group commit), then :meth:`flush` gives
each NVE with something to send its next batch of flow changes and the
packet-outs that wait for them.  Only dump requests, error answers and
echo requests leave at once (:meth:`switch_connected`, :meth:`start_audit`,
:meth:`error`, :meth:`check_liveness`).
"""

import logging

from .authority.authority import Authority
from .authority.commands import DeleteNVE
from .authority.events import Counters
from .southbound.channel import NveChannel
from .southbound.convergence import Convergence
from .southbound.flowtable import FlowTables

LOG = logging.getLogger(__name__)


class Service:
    """Everything the app decides and keeps, driven by events and time.

    ``store`` is the mapping database's record store (storage/store.py);
    ``observe_move(seconds)``, if given, is told each move's convergence
    time (the app's histogram); ``log`` takes what switches make us log
    (the app gives a runtime/ratelog.py PeerLog: bounded).
    """

    def __init__(self, settings, store, start_time=0.0, observe_move=None,
                 log=LOG):
        self.settings = settings
        self.log = log
        self.counters = Counters()
        self.tables = FlowTables()
        self.authority = Authority(self.tables, settings, store,
                                   counters=self.counters,
                                   start_time=start_time)
        self.store = self.authority.store
        self.views = self.authority.views
        self.event_log = self.authority.event_log
        self.channels = {}           # dpid -> NveChannel of connected NVEs
        self.convergence = Convergence(self.authority.record_convergence,
                                       observe_move)
        self._to_flush = set()       # NVEs with something to send
        self._audited = {}           # dpid -> when it was last audited
        self._disconnects = []       # dpids whose records a command deleted
        self.authority.listeners.append(self._on_changed)

    # -- commands (REST, RPC, the configuration file) --

    def execute(self, command, now):
        """Carry out one command (authority/commands.py) and commit it; its
        flows (and the probes of a registration being verified) leave at
        the next drain.  An NVE it deleted loses its channel here: the app
        disconnects the switches :meth:`take_disconnects` names."""
        try:
            return self.authority.execute(command, now)
        finally:
            self._queue(self.authority.take_packet_outs())
            if isinstance(command, DeleteNVE):
                self._forget_deleted()

    def _forget_deleted(self):
        nves = self.authority.db.nves
        for dpid in [d for d in self.tables if d not in nves]:
            # Its flows are its switch's business now: a switch that comes
            # back is dumped and reconciled against a fresh table.
            del self.tables[dpid]
            self._to_flush.discard(dpid)
            if self.channels.pop(dpid, None) is not None:
                self._disconnects.append(dpid)

    def take_disconnects(self):
        """Switches whose NVE record a command deleted while they were
        connected: the app closes their sessions."""
        out, self._disconnects = self._disconnects, []
        return out

    # -- BGP EVPN peers (peering/bgp.py's news) --

    def bgp_news(self, news, now):
        """Apply what the speaker heard (``Peering.take_news``): runs of
        routes as one commit each, session changes in between."""
        routes = []
        for kind, item in news:
            if kind == 'route':
                routes.append(item)
                continue
            if routes:
                self.authority.bgp_routes(routes, now)
                routes = []
            address, remote_as, router_id = item
            self.authority.bgp_session(address, kind == 'up', now,
                                       remote_as=remote_as,
                                       router_id=router_id)
        if routes:
            self.authority.bgp_routes(routes, now)

    def bgp_changes(self):
        """Changes of the EVPN routes to advertise since the last call
        (``{key: Route or None}``), for the speaker."""
        return self.authority.evpn.take_changes()

    # -- switches --

    def switch_connected(self, dpid, ports, nve_mac, now):
        """NVE ``dpid`` connected (``ports``: name -> OpenFlow port number;
        ``nve_mac``: its bridge's MAC).  Returns the dump requests to send:
        nothing is changed on it before its flows are known."""
        channel = self.channels[dpid] = NveChannel(
            dpid, self.tables.table(dpid), self.counters, self.event_log,
            lambda: self.authority.expected_flows(dpid),
            self.settings.flow_batch, self.settings.nve_max_queued_packets,
            self.log)
        self.authority.switch_connected(dpid, ports, nve_mac, now)
        return channel.start_dump()

    def switch_disconnected(self, dpid, now):
        """NVE ``dpid``'s channel went down."""
        if self.channels.pop(dpid, None) is None:
            return
        self._to_flush.add(dpid)     # its convergences wait no more
        self.authority.switch_disconnected(dpid, now)

    def port_changed(self, dpid, name, ofport, now):
        """A port of NVE ``dpid`` came up (``ofport``) or went (None)."""
        self._queue(self.authority.port_changed(dpid, name, ofport, now))

    def packet_in(self, dpid, table_id, in_port, port_name, fields, data,
                  now):
        """A frame NVE ``dpid`` punted from table ``table_id``."""
        if dpid not in self.channels:
            return
        self._queue(self.authority.packet_in(
            dpid, table_id, in_port, port_name, fields, data, now))

    def flow_stats(self, dpid, flow_counts, more, now):
        """A part of a flow dump: ``flow_counts`` is ``[(Flow, packet
        count)]``; ``more``: more parts follow."""
        channel = self.channels.get(dpid)
        if channel is not None and channel.dump_part(
                'flows', [flow for flow, _ in flow_counts], more, now):
            self._to_flush.add(dpid)
        # Source-flow counters tell which tenant systems still send: the
        # dumps of the periodic audit drive idle ageing.
        self.authority.observe_sources(dpid, flow_counts, now)

    def meter_config(self, dpid, meters, more, now):
        """A part of a meter dump."""
        channel = self.channels.get(dpid)
        if channel is not None and channel.dump_part('meters', meters, more,
                                                     now):
            self._to_flush.add(dpid)

    def barrier_reply(self, dpid, xid):
        """NVE ``dpid`` answered barrier ``xid``."""
        channel = self.channels.get(dpid)
        if channel is not None and channel.barrier_reply(xid):
            self._to_flush.add(dpid)

    def error(self, dpid, xid, kind, code, meter_exists=False):
        """NVE ``dpid`` refused message ``xid``; returns what to send."""
        channel = self.channels.get(dpid)
        if channel is None:
            # Also before the handshake gave it a datapath id (None).
            self.counters['of_errors'] += 1
            self.log.error('OFPErrorMsg from %016x type=%d code=%d',
                           dpid or 0, kind, code)
            return []
        return channel.error(xid, kind, code, meter_exists)

    def unencodable(self, dpid, failed):
        """Changes of NVE ``dpid``'s open batch could not be encoded and
        were left out of what was sent (``failed``: ``[(xid, reason)]``,
        from ofwire.encode_all): the NVE will not hold them."""
        channel = self.channels.get(dpid)
        if channel is not None:
            for xid, reason in failed:
                channel.unencodable(xid, reason)

    # -- liveness (its own clock: see NveChannel.check_liveness) --

    def check_liveness(self, now, busy=()):
        """Echo every connected NVE now and then; find those that left an
        echo, a barrier or their dump unanswered too long (counted and
        logged once).  ``busy``: NVEs whose send queue is full (no echo
        for them now).  Returns ``(sends, overdue)``: ``{dpid:
        [messages]}`` and the NVEs to disconnect."""
        conf = self.settings
        sends, overdue = {}, []
        for dpid, channel in self.channels.items():
            msgs, late = channel.check_liveness(
                now, conf.nve_echo_interval, conf.nve_reply_timeout,
                can_send=dpid not in busy)
            if late is not None:
                self.log.warning('NVE %016x did not answer its %s for %.0f '
                                 's: disconnecting it', dpid, *late)
                overdue.append(dpid)
            elif msgs:
                sends[dpid] = msgs
        return sends, overdue

    def echo_reply(self, dpid, xid, now):
        """NVE ``dpid`` answered echo ``xid`` (``now``: check_liveness's
        clock)."""
        channel = self.channels.get(dpid)
        if channel is not None:
            channel.echo_reply(xid, now)

    # -- time --

    def tick(self, now):
        """Time passes: probes time out, grace periods and redirects end."""
        self._queue(self.authority.tick(now))

    def next_wakeup(self):
        """When :meth:`tick` next has work before a regular tick, or None."""
        return self.authority.next_wakeup()

    # -- audits --

    def start_audit(self, dpid, report=None):
        """Dump NVE ``dpid`` now and repair what differs; ``report`` is
        called with what differed.  Returns the requests to send, or None
        when it cannot start now (not connected, or busy)."""
        channel = self.channels.get(dpid)
        if channel is None:
            return None
        return channel.start_dump(audit=True, report=report)

    def audit_next(self, now):
        """The NVE whose audit is most overdue, if ``audit_interval`` has
        passed since its last: ``(dpid, requests)``, or None."""
        interval = self.settings.audit_interval
        due = sorted((self._audited.get(d, 0.0), d) for d in self.channels)
        found = None
        if interval > 0 and due and now - due[0][0] >= interval:
            dpid = due[0][1]
            msgs = self.start_audit(dpid)
            if msgs:
                self._audited[dpid] = now
                found = dpid, msgs
        for dpid in set(self._audited) - set(self.channels):
            del self._audited[dpid]
        return found

    # -- the drain --

    def sync(self, offload=False):
        """Make every change so far durable (before anything that depends
        on it leaves); ``offload`` lets the store fsync in a thread."""
        self.store.sync(offload=offload)

    def flush(self, now):
        """What each NVE with something to send may send now: ``{dpid:
        [messages]}``, in send order.  Call after :meth:`sync`."""
        dpids, self._to_flush = self._to_flush, set()
        tables, channels = self.tables, self.channels
        sends = {}
        # Smallest batches first: after a move, a remote member needs one
        # route changed; it should not wait while the NVEs the tenant
        # system left and joined get their bigger batches serialized.
        for dpid in sorted(dpids, key=lambda d: (
                tables[d].pending if d in tables else 0, d)):
            channel = channels.get(dpid)
            if channel is not None:
                msgs = channel.flush()
                if msgs:
                    sends[dpid] = msgs
        self.convergence.acknowledged(dpids, self._settled, now)
        return sends

    def _settled(self, dpid):
        # A convergence waits on answers, not on success: a refused flow
        # is counted and shown apart (``failed``).
        channel = self.channels.get(dpid)
        return channel is None or channel.acknowledged

    def _on_changed(self, dpids, now):
        """The authority committed a change of these NVEs' flows."""
        channels = self.channels
        self.convergence.started(self.authority.take_moves(),
                                 {d for d in dpids if d in channels}, now)
        self._to_flush |= dpids

    def _queue(self, outs):
        for out in outs:
            channel = self.channels.get(out.dpid)
            if channel is not None and channel.queue_packet_out(out):
                self._to_flush.add(out.dpid)

    # -- status for REST and tests --

    def sync_status(self, dpid):
        """Whether NVE ``dpid`` holds everything (``/v1/sync``)."""
        channel = self.channels.get(dpid)
        if channel is not None:
            return channel.status()
        table = self.tables.get(dpid)
        return {'connected': False, 'synced': False, 'in_sync': False,
                'requested_seq': 0, 'applied_seq': 0,
                'pending': table.pending if table else 0, 'failed': 0}

    def store_stats(self):
        """The store's figures for metrics."""
        return self.store.stats()
