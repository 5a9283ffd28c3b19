"""The fleet-level loop body of the app, in plain Python (no os-ken).

:class:`Service` owns the authority, the NVEs' flow tables and channels,
move/attach convergence timing and the counters.  The os-ken shim (app.py)
hands it each event with the time (a packet-in, a switch's reply, a command
from REST or the RPC, a timer tick) and sends what it returns; unit tests
drive exactly the same code against simulated switches.

Sending happens at the drain: :meth:`sync` first makes every change so far
durable (one fsync for all of them: group commit), then :meth:`flush` gives
each NVE with something to send its next batch of flow changes and the
packet-outs that wait for them.  Only dump requests, error answers, role
requests and echo requests leave at once (:meth:`switch_connected`,
:meth:`start_audit`, :meth:`error`, :meth:`cluster_changed`,
:meth:`check_liveness`).

In a cluster of authorities (``cluster``: a southbound/cluster.py
Mastership; the store an etcd one) the service also keeps each channel's
OpenFlow role: a role request goes first on every connection; an NVE gets
flow changes and packet-outs only from its master, and only while the
master's lease holds (``mono``, a monotonic clock, is how the fence tells);
packet-ins of NVEs we do not master are dropped (counted); records the
other instances write come in through :meth:`apply_replicated`, and a
sync etcd refused puts the database back to what etcd holds and refuses
what depended on it (:class:`authority.errors.Conflict` when another
instance changed the same records first, Unavailable otherwise).
"""

import logging
import time

from .authority.addresses import dpid_str
from .authority import events as ev
from .authority.authority import Authority
from .authority.commands import DeleteNVE
from .authority.errors import Conflict, Unavailable
from .authority.events import Counters
from .southbound.channel import NveChannel
from .southbound.cluster import MASTER
from .southbound.convergence import Convergence
from .southbound.flowtable import FlowTables
from .southbound import trace as tracing
from .storage.etcd import StoreRefused

# OpenFlow 1.3 error types and codes the cluster's roles produce.
OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE = 1, 10
OFPET_ROLE_REQUEST_FAILED = 11

LOG = logging.getLogger(__name__)


class Service:
    """Everything the app decides and keeps, driven by events and time.

    ``store`` is the mapping database's record store (storage/store.py);
    ``observe_move(seconds)``, if given, is told each move's convergence
    time (the app's histogram), ``observe_migration(seconds)`` each
    completed migration's switch-over; ``log`` takes what switches make us
    log (the app gives a runtime/ratelog.py PeerLog: bounded).
    """

    def __init__(self, settings, store, start_time=0.0, observe_move=None,
                 log=LOG, cluster=None, mono=time.monotonic,
                 observe_migration=None):
        self.settings = settings
        self.cluster = cluster
        self.mono = mono
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
                                       observe_move, observe_migration)
        self._to_flush = set()       # NVEs with something to send
        self._audited = {}           # dpid -> when it was last audited
        self._verified_at = 0.0      # the last audit of a trusted NVE
        self._disconnects = []       # dpids whose records a command deleted
        self.authority.listeners.append(self._on_changed)
        self._connected = {}         # dpid -> (ports, bridge MAC): takeovers
        if cluster is not None:
            self.authority.decides = lambda dpid: cluster.decides(
                dpid, self.mono())

    # -- commands (REST, RPC, the configuration file) --

    def execute(self, command, now, dry_run=False):
        """Carry out one command (authority/commands.py) and commit it; its
        flows (and the probes of a registration being verified) leave at
        the next drain.  An NVE it deleted loses its channel here: the app
        disconnects the switches :meth:`take_disconnects` names.  In a
        cluster, an instance without a valid lease (or still reloading
        after losing one) refuses (Unavailable, 503): its view may be
        stale.  ``dry_run``: only say what it would do
        (authority/dryrun.py)."""
        cluster = self.cluster
        if cluster is not None and not (cluster.lease_ok(self.mono())
                                        and cluster.synced):
            raise Unavailable('this instance of the cluster holds no etcd '
                              'lease now (cut off from etcd, or resyncing)'
                              '; try again or use another instance')
        if dry_run:
            return self.authority.execute(command, now, dry_run=True)
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
            self.log, stamp_interval=self._stamp_interval(),
            stamp_wait=self.settings.stamp_wait)
        self._connected[dpid] = (dict(ports), nve_mac)
        self.authority.switch_connected(dpid, ports, nve_mac, now)
        msgs = []
        if self.cluster is not None:
            # First: a fresh connection is EQUAL, and may write.
            msgs = channel.ask_role(*self.cluster.role_for(dpid, self.mono()))
        if channel.stamp_interval:
            return channel.start_stamp_check(now)
        return msgs + channel.start_dump()

    def _stamp_interval(self):
        """Stamps (southbound/stamp.py) are written alone only: in a
        cluster another master may have written since, and every master
        dumps on taking over anyway."""
        return self.settings.stamp_interval if self.cluster is None else 0.0

    def switch_disconnected(self, dpid, now):
        """NVE ``dpid``'s channel went down."""
        if self.channels.pop(dpid, None) is None:
            return
        self._connected.pop(dpid, None)
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
        if self.cluster is not None and not self.may_write(dpid):
            # Another instance masters it (or our lease lapsed): its
            # master decides; a fresh connection, still EQUAL, gets these.
            self.counters['packet_in'] += 1
            self.counters['dropped_not_master'] += 1
            return
        self._queue(self.authority.packet_in(
            dpid, table_id, in_port, port_name, fields, data, now))

    def flow_stats(self, dpid, flow_counts, more, now):
        """A part of a flow dump: ``flow_counts`` is ``[(Flow, packet
        count, byte count)]`` (the byte count may be left out);
        ``more``: more parts follow).  Returns what to send now: the dump
        of an NVE whose stamp (the reply to a stamp request) did not
        match."""
        channel = self.channels.get(dpid)
        if channel is not None and channel.dumping is not None and \
                'stamp' in channel.dumping:
            # The stamp counts no traffic.
            if channel.dump_part('flows', [item[0] for item in flow_counts],
                                 more, now):
                if channel.want_dump:
                    channel.want_dump = False
                    return channel.start_dump()
                self._to_flush.add(dpid)
            return []
        if channel is not None and channel.dump_part(
                'flows', [item[0] for item in flow_counts], more, now):
            self._to_flush.add(dpid)
        # Source-flow counters tell which tenant systems still send: the
        # dumps of the periodic audit drive idle ageing; a gateway's
        # interconnect flows count what crossed.
        self.authority.observe_sources(dpid, flow_counts, now)
        self.authority.observe_gateway(dpid, flow_counts, now)
        return []

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
        if channel is not None and self.cluster is not None:
            if kind == OFPET_ROLE_REQUEST_FAILED:
                # Our view lagged another instance's newer generation (or
                # we asked twice): counted; the watch brings the news.
                channel.role_refused(xid)
                self.counters['role_requests_stale'] += 1
                return []
            if (kind, code) == (OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE):
                # Another instance took the NVE over before we knew.
                self.counters['writes_refused_not_master'] += 1
                channel.not_master()
                return []
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
        """Time passes: probes time out, grace periods and redirects end;
        NVEs whose stamp is due get it."""
        self._queue(self.authority.tick(now))
        checking = False
        for dpid, channel in self.channels.items():
            if channel.stamp_wanted(now) or channel.awaiting is not None:
                self._to_flush.add(dpid)
            checking = checking or channel.awaiting is not None or (
                channel.dumping is not None and 'stamp' in channel.dumping)
        if not checking:
            # The digests remembered serve one change, or one fleet
            # reconnecting: none is under way.
            self.tables.trim()

    def next_wakeup(self):
        """When :meth:`tick` next has work before a regular tick, or None."""
        return self.authority.next_wakeup()

    # -- audits --

    def start_audit(self, dpid, report=None):
        """Dump NVE ``dpid`` now and repair what differs; ``report`` is
        called with what differed.  Returns the requests to send, or None
        when it cannot start now (not connected, or busy)."""
        channel = self.channels.get(dpid)
        if channel is None or (self.cluster is not None
                               and not self.may_write(dpid)):
            return None
        return channel.start_dump(audit=True, report=report)

    def unverified(self):
        """NVEs in sync by their stamp that no audit has dumped yet."""
        return sorted(d for d, c in self.channels.items() if c.trusted)

    def audit_next(self, now):
        """The NVE to audit now: first an NVE in sync by its stamp alone,
        one every ``stamp_verify_interval`` (a switch changed while the
        app was down is found soon after); else the one whose audit is
        most overdue, if ``audit_interval`` has passed since its last.
        ``(dpid, requests)``, or None."""
        pace = self.settings.stamp_verify_interval
        if pace > 0 and now - self._verified_at >= pace:
            for dpid in self.unverified():
                msgs = self.start_audit(dpid)
                if msgs:
                    self._verified_at = self._audited[dpid] = now
                    return dpid, msgs
        interval = self.settings.audit_interval
        due = sorted((self._audited.get(d, 0.0), d) for d in self.channels
                     if self.cluster is None or self.may_write(d))
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

    def sync(self, offload=False, now=None):
        """Make every change so far durable (before anything that depends
        on it leaves); ``offload`` lets the store fsync in a thread.

        A cluster's store may refuse (another instance changed the same
        records first, the lease is gone, etcd is out of reach): the
        database is put back to what etcd holds, the frames that waited
        for the refused changes are dropped (the next frame retries), and
        Conflict or Unavailable is raised for whoever waits on the
        change."""
        try:
            self.store.sync(offload=offload)
        except StoreRefused as refused:
            self.counters['store_refused'] += 1
            for channel in self.channels.values():
                if channel.outs:
                    self.counters['packet_outs_dropped'] += len(channel.outs)
                    channel.outs = []
            self.authority.apply_records(refused.records,
                                         time.time() if now is None else now)
            if refused.conflict:
                self.counters['store_conflicts'] += 1
                raise Conflict('another instance of the cluster changed the '
                               'same records first; nothing was changed: '
                               'try again') from None
            raise Unavailable('the change could not be committed to etcd ('
                              '%s); nothing was changed' % refused.reason) \
                from None

    def flush(self, now):
        """What each NVE with something to send may send now: ``{dpid:
        [messages]}``, in send order.  Call after :meth:`sync`."""
        dpids, self._to_flush = self._to_flush, set()
        channels = self.channels
        sends = []
        cluster = self.cluster
        settled = None
        for dpid in sorted(dpids):
            channel = channels.get(dpid)
            if channel is not None:
                if settled is None and channel.awaiting is not None:
                    # Every NVE up: what each must hold no longer waits on
                    # others.  Only a stamp waiting to be compared asks (a
                    # look at every NVE, not for every drain).
                    settled = all(d in channels
                                  for d in self.authority.db.nves)
                msgs = channel.flush(cluster is None or self.may_write(dpid),
                                     now, bool(settled))
                if msgs:
                    sends.append((dpid, msgs))
        self.convergence.acknowledged(dpids, self._settled, now)
        # Smallest batches first: after a move, a remote member needs one
        # route changed; it should not wait while the NVEs the tenant
        # system left and joined get their bigger batches serialized.
        # Counted in messages: the tables' backlog counts owners, and a
        # tenant system's own NVE holds one owner of a dozen flows.
        sends.sort(key=lambda item: len(item[1]))
        return dict(sends)

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

    # -- a cluster of authorities --

    def may_write(self, dpid):
        """Whether this instance may send NVE ``dpid`` anything that
        changes it: alone, always; in a cluster, while it owns the NVE
        under its current lease, the lease holds (the local fence) and the
        switch confirmed it master under that generation."""
        cluster = self.cluster
        if cluster is None:
            return True
        gen = cluster.may_write(dpid, self.mono())
        channel = self.channels.get(dpid)
        return gen is not None and channel is not None and \
            channel.is_master(gen)

    def cluster_changed(self, now):
        """The cluster's view or our lease changed: the role requests that
        bring every channel to the role it should have.  Returns ``{dpid:
        [messages]}``."""
        sends = {}
        cluster, mono = self.cluster, self.mono()
        for dpid, channel in self.channels.items():
            role, gen = cluster.role_for(dpid, mono)
            was_master = channel.role is not None and \
                channel.role[0] == MASTER
            msgs = channel.ask_role(role, gen)
            if was_master and (channel.role is None
                               or channel.role[0] != MASTER):
                self._role_event(now, dpid, 'slave', gen)
            if msgs:
                sends[dpid] = msgs
        return sends

    def role_reply(self, dpid, role, generation, now):
        """NVE ``dpid``'s switch confirmed ``role`` under ``generation``.
        Becoming master: the NVE is dumped before anything is sent, and
        what its connection decides is decided by us now."""
        channel = self.channels.get(dpid)
        if channel is None:
            return
        was = channel.role
        if channel.role_reply(role, generation):
            if self.cluster is not None and \
                    self.cluster.mine(dpid) == generation:
                self._role_event(now, dpid, role, generation)
                ports, mac = self._connected.get(dpid, ({}, None))
                self.authority.took_over(dpid, ports, mac, now)
            self._to_flush.add(dpid)
        elif was is not None and was[0] == MASTER and role != MASTER:
            self._role_event(now, dpid, role, generation)

    def _role_event(self, now, dpid, role, generation):
        self.counters['role_changes'] += 1
        self.event_log.record(now, ev.NVE_ROLE, nve=dpid_str(dpid),
                              role=role, generation=generation,
                              instance=self.cluster.name)

    def lease_lost(self, now):
        """Our etcd lease expired (we were frozen or cut off): every NVE is
        someone else's now; the event says so."""
        self.event_log.record(now, ev.LEASE_LOST, instance=self.cluster.name)

    def apply_replicated(self, changes, now):
        """Records another instance wrote (``{(kind, key): value or
        None}``), put in place; their flows leave at the next drain (to the
        NVEs we master)."""
        if changes:
            self.authority.apply_records(changes, now)

    def cluster_status(self, name='nvo3'):
        """What ``GET /v1/cluster`` shows of the cluster (without etcd's
        health, which the shim adds).  Alone (``name``: this instance's),
        one instance on its own store, master of every NVE connected."""
        cluster = self.cluster
        if cluster is None:
            return {'instance': name, 'leader': name,
                    'backend': 'journal' if hasattr(self.store, 'compact')
                    else 'memory',
                    'instances': [{'name': name, 'alive': True, 'masters': [
                        dpid_str(d) for d in sorted(self.channels)]}],
                    'etcd': None}
        masters = cluster.masters()
        alive = set(cluster.alive)
        instances = []
        for name in sorted(cluster.known | alive | set(masters)):
            info = cluster.alive.get(name, (None, None))[1]
            instances.append({
                'name': name, 'alive': name in alive,
                'masters': [dpid_str(d) for d in masters.get(name, ())],
                'info': info})
        leader = cluster.leader[0] if cluster.leader else None
        mono = self.mono()
        return {'instance': cluster.name, 'leader': leader,
                'instances': instances,
                'lease_ok': cluster.lease_ok(mono),
                'lease_losses': cluster.lease_losses,
                'roles': {dpid_str(d): ('master' if self.may_write(d)
                                        else 'slave')
                          for d in sorted(self.channels)}}

    # -- status for REST and tests --

    def sync_status(self, dpid):
        """Whether NVE ``dpid`` holds everything (``/v1/sync``).  In a
        cluster, ``role`` says whether this instance masters it (only its
        master sends it anything, so only there does ``in_sync`` mean
        something; ``master`` names it)."""
        channel = self.channels.get(dpid)
        if channel is not None:
            status = channel.status()
            if self.cluster is not None:
                owner = self.cluster.owners.get(dpid)
                status['master'] = owner.name if owner else None
                if self.may_write(dpid):
                    status['role'] = 'master'
                else:
                    status['role'] = 'slave'
                    status['in_sync'] = False
            return status
        table = self.tables.get(dpid)
        return {'connected': False, 'synced': False, 'in_sync': False,
                'requested_seq': 0, 'applied_seq': 0,
                'pending': table.pending if table else 0, 'failed': 0}

    def trace(self, vn, src, dst, kind='auto', at=None):
        """Explain a frame's fate (southbound/trace.py) on the flows the
        authority holds for the NVEs."""
        self.authority.planner.plan_deferred()
        return tracing.trace(self.views, self.tables, self.settings, vn, src,
                             dst, kind, at)

    def store_stats(self):
        """The store's figures for metrics."""
        return self.store.stats()
