"""The os-ken shim: OpenFlow events in, the authority's messages out.

Launch::

    osken-manager --ofp-tcp-listen-port 6653 --config-file nvo3.conf \\
        nvo3_ryu_app.app

All decisions live in :mod:`authority` (plain Python).  This module only
translates events, owns the per-NVE channel state, and is the one place that
sends: :meth:`NVO3App._drain` first makes the changes so far durable (one
fsync for all of them: group commit), then :meth:`NVO3App._flush` sends each
NVE's pending flow changes in bounded batches, each closed by a barrier;
the next batch leaves when the barrier reply arrives, which also advances
the NVE's acknowledged sequence number (``applied_seq``) that REST and
tests wait on.  Events are drained when os-ken's event queue runs empty, or
``DRAIN_INTERVAL`` after the last drain at the latest, so a burst of
packet-ins shares one fsync and fills batches, and REST still gets its
turn.
"""

import functools
import logging
import signal
import time

import eventlet.hubs
import greenlet
from eventlet import tpool
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER,
                                       MAIN_DISPATCHER, set_ev_cls)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3 as ofp

from . import authority as authority_mod
from . import declared, events, flows, gcpolicy, metrics, mobility, ofmsg
from . import listener, ofguard, options, persist, ratelog
from . import store

LOG = logging.getLogger('nvo3_ryu_app')

# Seconds of event handling between two drains at most (latency and REST
# fairness against fewer fsyncs and fuller batches under a burst).
DRAIN_INTERVAL = 0.005


def stop_in_main_greenlet():
    """Make SIGINT (Ctrl-C, and how the testbed stops the app) stop
    osken-manager the way it means to: a KeyboardInterrupt in its main
    greenlet, which closes the apps.

    Python raises KeyboardInterrupt in whatever code runs when the signal
    comes, and under eventlet that is any greenlet: the app's event loop in
    the middle of a commit, a datapath's receive loop, the ticker.  os-ken
    logs it there ("hub: uncaught exception", or "Exception occurred during
    handler processing") and that greenlet dies, while the main greenlet
    never hears of it and the process goes on without its ticker, or half
    way through a change.  Here the handler only asks the hub to raise it
    in the main greenlet, between greenlets, where osken-manager waits for
    it; a second Ctrl-C interrupts at once, as before."""
    main = greenlet.getcurrent()
    while main.parent is not None:
        main = main.parent

    def interrupt(_signum, _frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        eventlet.hubs.get_hub().schedule_call_global(
            0, main.throw, KeyboardInterrupt)

    try:
        signal.signal(signal.SIGINT, interrupt)
    except ValueError:
        LOG.debug('not in the main thread: SIGINT left as it is')


def _then_drain(handler):
    """An os-ken event handler after which pending sends may leave."""
    @functools.wraps(handler)
    def wrapper(self, ev):
        try:
            handler(self, ev)
        finally:
            self._after_event()
    return wrapper


class NveLink:
    """The channel state of one connected NVE."""

    def __init__(self, datapath, now):
        self.dp = datapath
        self.synced = False          # installed flows known (dump done)
        self.dumping = None          # {'flows': [...], 'meters': [...]}
        self.audit = False           # the running dump is an audit
        self.barrier_xid = None
        self.inflight = {}           # xid -> (op, item) of the open batch
        self.requested_seq = 0
        self.applied_seq = 0
        self.outs = []               # packet-outs to send at the next drain
        self.report = None           # called with the result of a dump
        # Flow changes the NVE refused (OpenFlow error) or that could not
        # be encoded: key -> (op, item, reason).  The NVE does not hold
        # what it must while there are any: not in sync.
        self.failed = {}
        # Liveness (_check_liveness): when the barrier or dump we wait on
        # left, or the dump's last part came (None: not waiting); the echo
        # we wait on, and when the last one was answered.
        self.waiting_since = None
        self.echo_xid = None
        self.echo_sent = None
        self.last_echo = now
        self.dropped = False


class NVO3App(app_manager.OSKenApp):
    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conf = options.register()
        # What peers make us log is bounded (ratelog.py), ours and
        # os-ken's alike.
        limiter = ratelog.RateLimiter(self.conf.peer_log_per_minute)
        ratelog.guard_loggers(limiter)
        self.peer_log = ratelog.PeerLog(LOG, limiter)
        try:
            self.authority = self._load()
        except (store.StoreError, declared.ConfigError,
                persist.RestoreError) as exc:
            # One clear line, not a traceback; never start over a broken
            # store or a bad configuration file.
            if isinstance(exc, persist.RestoreError):
                LOG.error('cannot start: the records in %s do not form a '
                          'consistent mapping database: %s',
                          self.conf.state_dir, exc)
            else:
                LOG.error('cannot start: %s', exc)
            if isinstance(exc, store.StoreCorrupt):
                LOG.error('to start from the last good snapshot, set '
                          '[nvo3] recover_from_snapshot = true')
            raise SystemExit(2) from None
        self.gc_policy = gcpolicy.GcPolicy(
            threshold0=self.conf.gc_threshold0,
            full_interval=self.conf.gc_full_interval)
        self.links = {}
        # Moves and attaches whose flows are not acknowledged yet:
        # id -> (event, started, {dpid still to acknowledge}), and the
        # index dpid -> {id} that lets a barrier reply look at its own.
        self.convergence = {}
        self._waiting = {}
        self._next_convergence = 0
        self._wakeup = None          # a greenlet sleeping until a deadline
        self._to_flush = set()       # NVEs with changes to send
        self._last_drain = time.monotonic()
        backing = self.authority.store
        backing.group_commit = True
        if hasattr(backing, 'background_compaction'):
            # Snapshots are written between events, their fsync in a
            # thread (see JournalStore.compact_step).
            backing.background_compaction = True
            backing.offload = tpool.execute
        self.authority.listeners.append(self._on_changed)
        self._guard_openflow()
        self._threads = [hub.spawn(self._ticker), hub.spawn(self._auditor),
                         hub.spawn(self._lag_probe),
                         hub.spawn(self._compactor)]
        self._start_services()
        stop_in_main_greenlet()

    def _load(self):
        """The store, the authority over it, and the configuration file."""
        conf = self.conf
        flow_cfg = flows.FlowConfig(
            tunnel_ports={'vxlan': conf.vxlan_port, 'gre': conf.gre_port},
            punt_rate_pps=conf.punt_rate_pps,
            miss_rate_pps=conf.miss_rate_pps)
        if conf.persist:
            backing = store.JournalStore(
                conf.state_dir, fsync=conf.store_fsync,
                recover_from_snapshot=conf.recover_from_snapshot)
        else:
            backing = store.MemoryStore()
        authority = authority_mod.Authority(
            flow_cfg, backing, authority_mod.Options(
                nve_down_grace=conf.nve_down_grace,
                port_down_grace=conf.port_down_grace,
                max_macs_per_port=conf.max_macs_per_port,
                idle_timeout=conf.idle_timeout,
                mobility_options=mobility.MobilityOptions(
                    probe_timeout=conf.move_probe_timeout,
                    max_moves=conf.max_moves, move_window=conf.move_window,
                    freeze_time=conf.freeze_time,
                    block_time=conf.block_time,
                    redirect_hold=conf.redirect_hold)),
            start_time=self.now())
        if conf.config_file:
            doc = declared.load(conf.config_file)
            now = self.now()
            authority.run(now, declared.apply, authority.db, doc, now)
        return authority

    def _guard_openflow(self):
        """What switches may do to this process, bounded (os-ken is not
        edited; see ofguard.py and listener.py): every length os-ken's
        parser trusts is checked before it runs, a switch that sends
        nonsense is dropped; the OpenFlow accept loop survives running
        out of descriptors, holds at most of_max_connections and closes
        a connection that has not finished its handshake in time."""
        conf, counters = self.conf, self.authority.counters

        def rejected(datapath, msg_type, reason):
            counters['of_bad_messages'] += 1
            self.peer_log.warning(
                'OpenFlow message type %d from %s rejected: %s; '
                'disconnecting', msg_type,
                getattr(datapath, 'address', '?'), reason)

        def ignored(datapath, msg_type, reason):
            counters['of_ignored_messages'] += 1

        ofguard.install(rejected, ignored)
        listener.install_openflow(conf.of_max_connections,
                                  conf.of_handshake_timeout, counters,
                                  self.peer_log)
        # Room for every connection the servers allow, and some.
        listener.raise_descriptor_limit(
            conf.of_max_connections + conf.rest_max_connections
            + conf.rpc_max_connections + 256)

    def _start_services(self):
        from . import registration, rest
        conf = self.conf
        self.rest_app = rest.make_app(self,
                                      allowed_hosts=conf.rest_allowed_hosts)
        self.rest_server = rest.Server(
            self.rest_app, listener.listen(conf.rest_listen_host,
                                           conf.rest_listen_port),
            max_connections=conf.rest_max_connections,
            idle_timeout=conf.rest_idle_timeout,
            request_timeout=conf.rest_request_timeout,
            counters=self.authority.counters, log=self.peer_log)
        self._threads.append(hub.spawn(self.rest_server.serve_forever))
        self.rpc_server = registration.RegistrationServer(
            self, max_connections=conf.rpc_max_connections,
            idle_timeout=conf.rpc_idle_timeout,
            request_timeout=conf.rpc_request_timeout, log=self.peer_log)
        self._threads.append(hub.spawn(
            self.rpc_server.serve, conf.rpc_listen_host,
            conf.rpc_listen_port))
        LOG.info('REST on %s:%d, registration RPC on %s:%d',
                 conf.rest_listen_host, conf.rest_listen_port,
                 conf.rpc_listen_host, conf.rpc_listen_port)

    @staticmethod
    def now():
        return time.time()

    def change(self, func, /, *args, **kwargs):
        """Run one database operation for REST/RPC and commit it; durable
        (and its flows on their way) before the caller answers."""
        try:
            return self.authority.run(self.now(), func, *args, **kwargs)
        finally:
            self._drain()

    # -- timers: they call into the authority like any other event --

    def _ticker(self):
        while True:
            hub.sleep(self.conf.tick_interval)
            self._tick()

    def _tick(self):
        try:
            self._send_outs(self.authority.tick(self.now()))
        except Exception:  # pylint: disable=broad-except
            LOG.exception('tick failed')
        self._check_liveness()
        self._drain()
        self.gc_policy.tick()
        self._schedule_wakeup()

    def _schedule_wakeup(self):
        """Probe deadlines are shorter than a tick: wake up for them."""
        due = self.authority.next_wakeup()
        if due is None or self._wakeup is not None:
            return
        delay = max(0.0, due - self.now())
        if delay >= self.conf.tick_interval:
            return

        def wake():
            hub.sleep(delay)
            self._wakeup = None
            self._tick()
        self._wakeup = hub.spawn(wake)

    def _compactor(self):
        """Write a snapshot being made a slice at a time, between events."""
        backing = self.authority.store
        while True:
            if getattr(backing, 'compacting', False):
                try:
                    backing.compact_step()
                except Exception:  # pylint: disable=broad-except
                    LOG.exception('compaction step failed')
                hub.sleep(0)
            else:
                hub.sleep(0.05)

    @staticmethod
    def _lag_probe():
        """Measure how late the event loop wakes a sleeping greenlet."""
        while True:
            asked = time.monotonic()
            hub.sleep(0.01)
            metrics.loop_lag.observe(
                max(0.0, time.monotonic() - asked - 0.01))

    def _auditor(self):
        """Audit every NVE once per ``audit_interval``, one at a time and
        spread over the interval: dumping a whole fleet at once would keep
        the event loop parsing flow stats for longer than the interval."""
        done = {}                    # dpid -> when it was last audited
        while True:
            interval = self.conf.audit_interval
            if interval <= 0:
                hub.sleep(60)
                continue
            due = sorted((done.get(d, 0.0), d) for d in self.links)
            hub.sleep(max(0.05, interval / max(1, len(due))))
            if due and self.now() - due[0][0] >= interval:
                dpid = due[0][1]
                if self.start_dump(dpid, audit=True):
                    done[dpid] = self.now()
            for dpid in set(done) - set(self.links):
                del done[dpid]

    # -- connection life cycle --

    @set_ev_cls(ofp_event.EventOFPStateChange,
                [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_then_drain
    def _state_change(self, ev):
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            old = self.links.get(dp.id)
            if old is not None and old.dp is not dp:
                LOG.info('NVE %016x reconnected', dp.id)
            self.links[dp.id] = NveLink(dp, time.monotonic())
            ports, mac = self._ports(dp)
            self.authority.switch_connected(dp.id, ports, mac, self.now())
            self.start_dump(dp.id)
        elif ev.state == DEAD_DISPATCHER:
            link = self.links.get(dp.id)
            if link is None or link.dp is not dp:
                return
            del self.links[dp.id]
            self._to_flush.add(dp.id)    # its convergence waits no more
            self.authority.switch_disconnected(dp.id, self.now())

    def _check_liveness(self):
        """Echo every NVE each ``nve_echo_interval``; an NVE that leaves
        an echo, a barrier or its dump unanswered for
        ``nve_reply_timeout`` is disconnected (it connects again and is
        dumped afresh): a switch that never answers must neither stay
        "not in sync" for good nor keep what waits for it."""
        now = time.monotonic()
        timeout = self.conf.nve_reply_timeout
        interval = self.conf.nve_echo_interval
        for dpid, link in list(self.links.items()):
            if link.dropped:
                continue
            waits = [(t, what) for t, what in (
                (link.waiting_since, 'dump' if link.dumping is not None
                 else 'barrier'), (link.echo_sent, 'echo')) if t is not None]
            if timeout > 0 and waits:
                since, what = min(waits)
                if now - since > timeout:
                    link.dropped = True
                    self.authority.counters['nve_reply_timeouts'] += 1
                    self.peer_log.warning(
                        'NVE %016x did not answer its %s for %.0f s: '
                        'disconnecting it', dpid, what, now - since)
                    ofguard.drop(link.dp)
                    continue
            if interval > 0 and link.echo_xid is None and \
                    now - link.last_echo >= interval:
                queue = link.dp.send_q
                if queue is None or queue.full():
                    continue
                echo = link.dp.ofproto_parser.OFPEchoRequest(link.dp)
                link.dp.set_xid(echo)
                link.echo_xid, link.echo_sent = echo.xid, now
                link.dp.send_msg(echo)

    @set_ev_cls(ofp_event.EventOFPEchoReply, MAIN_DISPATCHER)
    def _echo_reply(self, ev):
        link = self.links.get(ev.msg.datapath.id)
        if link is not None and ev.msg.xid == link.echo_xid:
            link.echo_xid = link.echo_sent = None
            link.last_echo = time.monotonic()

    @staticmethod
    def _ports(dp):
        ports, mac = {}, None
        for port in dp.ports.values():
            name = _port_name(port)
            if port.port_no == ofp.OFPP_LOCAL:
                mac = port.hw_addr
            elif port.port_no < ofp.OFPP_MAX and _port_up(port):
                ports[name] = port.port_no
        return ports, mac

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @_then_drain
    def _port_status(self, ev):
        msg = ev.msg
        port = msg.desc
        if port.port_no >= ofp.OFPP_MAX:
            return
        up = msg.reason != ofp.OFPPR_DELETE and _port_up(port)
        self._send_outs(self.authority.port_changed(
            msg.datapath.id, _port_name(port), port.port_no if up else None,
            self.now()))

    # -- dumps: what the NVE holds (on connect, and in audits) --

    def start_dump(self, dpid, audit=False, report=None):
        link = self.links.get(dpid)
        if link is None or link.dumping is not None or (
                audit and link.barrier_xid is not None):
            return False
        link.dumping = {'flows': None, 'meters': None}
        link.audit = audit
        link.report = report
        link.waiting_since = time.monotonic()
        link.dp.send_msg(ofmsg.flow_stats_request(link.dp))
        link.dp.send_msg(ofmsg.meter_config_request(link.dp))
        return True

    def audit_now(self, dpid, timeout=10.0):
        """Dump one NVE now and say how it differs from what the database
        implies (before the audit repairs it).  Blocks only the caller's
        greenlet (a REST request), never the event loop."""
        deadline = time.time() + timeout
        while True:
            link = self.links.get(dpid)
            if link is None:
                return None
            done = hub.Event()
            result = {}
            if self.start_dump(dpid, audit=True,
                               report=lambda r: (result.update(r),
                                                 done.set())):
                break
            if time.time() > deadline:
                return None
            hub.sleep(0.01)
        done.wait(timeout=max(0.1, deadline - time.time()))
        return result or None

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @_then_drain
    def _flow_stats(self, ev):
        flows_ = [ofmsg.flow_from_stats(s) for s in ev.msg.body]
        self._dump_part(ev.msg, 'flows', flows_)
        # Source-flow counters tell which tenant systems still send: the
        # dumps of the periodic audit drive idle ageing.
        self.authority.observe_sources(
            ev.msg.datapath.id,
            [(f, s.packet_count) for f, s in zip(flows_, ev.msg.body)],
            self.now())

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    @_then_drain
    def _meter_config(self, ev):
        self._dump_part(ev.msg, 'meters',
                        [ofmsg.meter_from_config(s) for s in ev.msg.body])

    def _dump_part(self, msg, kind, items):
        link = self.links.get(msg.datapath.id)
        if link is None or link.dumping is None:
            return
        link.waiting_since = time.monotonic()     # it answers: progress
        got = link.dumping[kind] or []
        got.extend(items)
        link.dumping[kind] = got
        if msg.flags & ofp.OFPMPF_REPLY_MORE:
            link.dumping[kind + '_more'] = True
            return
        link.dumping[kind + '_done'] = True
        if link.dumping.get('flows_done') and link.dumping.get('meters_done'):
            self._dump_complete(msg.datapath.id, link)

    def _dump_complete(self, dpid, link):
        installed = link.dumping['flows'] + link.dumping['meters']
        link.dumping = None
        link.waiting_since = None
        # The dump is the whole truth: what failed before is compared
        # (and sent) again.
        link.failed = {}
        table = self.authority.planner.table(dpid)
        table.load_installed(installed)
        missing, stale, different = table.diff()
        if link.report is not None:
            expected = self.authority.planner.expected(dpid)
            link.report({
                'nve': '%016x' % dpid, 'installed': len(installed),
                'desired': len(table.desired),
                'desired_equals_recompute': expected == table.desired,
                'missing': sorted(repr(k) for k in missing),
                'stale': sorted(repr(k) for k in stale),
                'different': sorted(repr(k) for k in different)})
            link.report = None
        repaired = len(missing) + len(stale) + len(different)
        counters = self.authority.counters
        if link.audit:
            counters['audits'] += 1
            if repaired:
                counters['audit_repairs'] += repaired
                self.authority.events.record(
                    self.now(), events.AUDIT_REPAIR, nve='%016x' % dpid,
                    missing=len(missing), stale=len(stale),
                    different=len(different))
                LOG.warning('audit of %016x: %d missing, %d stale, %d '
                            'different flows; repairing', dpid, len(missing),
                            len(stale), len(different))
        else:
            counters['sync_repairs'] += repaired
            LOG.info('NVE %016x synced: %d installed, %d missing, %d stale, '
                     '%d different', dpid, len(installed), len(missing),
                     len(stale), len(different))
        link.synced = True
        self._to_flush.add(dpid)

    # -- the one place that sends flow changes --

    def _after_event(self):
        """Drain when os-ken's queue is empty (nothing else to batch with)
        or ``DRAIN_INTERVAL`` after the last drain, then let other greenlets
        run (os-ken's loop only yields when its queue is empty: REST and RPC
        would otherwise wait for the end of a packet-in burst)."""
        if self.events.empty() or \
                time.monotonic() - self._last_drain >= DRAIN_INTERVAL:
            self._drain()
            hub.sleep(0)

    def _drain(self):
        """Everything committed so far is made durable, then sent."""
        self._last_drain = time.monotonic()
        # Under load the fsync runs in a thread while REST and os-ken's
        # receive loops go on; with nothing else waiting, inline is faster
        # (a thread hand-off cost ~0.5 ms of attach latency).
        self.authority.store.sync(offload=not self.events.empty())
        dpids, self._to_flush = self._to_flush, set()
        # Smallest batches first: after a move, a remote member needs one
        # route changed; it should not wait while the NVEs the tenant
        # system left and joined get their bigger batches serialized.
        tables = self.authority.planner.tables
        for dpid in sorted(dpids, key=lambda d: (
                tables[d].pending if d in tables else 0, d)):
            self._flush(dpid)
        self._converged(dpids)

    def _on_changed(self, dpids):
        for event in self.authority.take_moves():
            waiting = {d for d in dpids if d in self.links}
            # An attach is timed from its packet-in (the event's time).
            started = event['time'] if event['type'] == 'attach' \
                else self.now()
            if not waiting:
                self._record_convergence(event, started)
                continue
            cid = self._next_convergence
            self._next_convergence += 1
            self.convergence[cid] = (event, started, waiting)
            for d in waiting:
                self._waiting.setdefault(d, set()).add(cid)
        self._to_flush |= dpids

    def _flush(self, dpid):
        """Send an NVE its next batch of flow changes (one at a time, each
        closed by a barrier), then the packet-outs that wait for them."""
        link = self.links.get(dpid)
        if link is None:
            return
        table = self.authority.planner.tables.get(dpid)
        if table is not None and link.synced and link.dumping is None \
                and link.barrier_xid is None:
            self._send_batch(link, table)
        # Flows already sent precede a packet-out on the channel; only
        # flows not sent yet make a frame wait.
        if link.outs and (table is None or table.in_sync):
            outs, link.outs = link.outs, []
            for out in outs:
                self._packet_out(link, out)

    def _send_batch(self, link, table):
        changes = table.take_changes(limit=self.conf.flow_batch)
        if not changes:
            return
        dp = link.dp
        link.requested_seq += 1

        def next_xid():
            dp.xid = (dp.xid + 1) & dp.ofproto.MAX_XID    # dp.set_xid
            return dp.xid
        # Each change is encoded on its own: one that cannot be (a bug, or
        # a value from outside the validated entries) is counted and kept
        # out of sync; the batch goes on without it.
        wire, inflight, failed = ofmsg.encode_batch(changes, next_xid)
        link.inflight.update(inflight)
        for op, item in inflight.values():
            link.failed.pop(item.key, None)
        for op, item, reason in failed:
            self._failed_change(link, op, item, reason)
        self.authority.counters['flow_mods'] += len(inflight)
        # The batch and its barrier leave as one write (one send-queue
        # entry, one system call), in order.
        barrier = dp.ofproto_parser.OFPBarrierRequest(dp)
        dp.set_xid(barrier)
        barrier.serialize()
        wire.append(barrier.buf)
        link.barrier_xid = barrier.xid
        link.waiting_since = time.monotonic()
        dp.send(b''.join(wire))

    def _failed_change(self, link, op, item, reason, refused=False):
        """A change the NVE will not hold: counted, logged (bounded), and
        the NVE out of sync until a dump shows what it holds.  A delete
        that cannot be encoded removes nothing the NVE could hold (its
        match could not have been installed either)."""
        counters = self.authority.counters
        counters['flow_mods_refused' if refused else
                 'flow_mods_unencodable'] += 1
        self.peer_log.error('NVE %016x: %s', link.dp.id, reason)
        if op == 'delete' and not refused:
            link.failed.pop(item.key, None)
        else:
            link.failed[item.key] = (op, item, reason)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @_then_drain
    def _barrier_reply(self, ev):
        dpid = ev.msg.datapath.id
        link = self.links.get(dpid)
        if link is None or ev.msg.xid != link.barrier_xid:
            return
        link.barrier_xid = None
        link.waiting_since = None
        link.inflight.clear()
        link.applied_seq = link.requested_seq
        self._to_flush.add(dpid)

    def _converged(self, dpids):
        """A move (or attach) has converged when every NVE it changed
        acknowledged (or went away).  Only the NVEs in ``dpids`` changed
        state, so only the moves waiting on them are looked at: with many
        attachments in flight, sweeping all of them on every barrier reply
        cost more than everything else the app does."""
        for dpid in dpids:
            ids = self._waiting.get(dpid)
            if not ids or (dpid in self.links
                           and not self._acknowledged(dpid)):
                continue
            del self._waiting[dpid]
            for cid in ids:
                event, started, waiting = self.convergence[cid]
                waiting.discard(dpid)
                if not waiting:
                    del self.convergence[cid]
                    self._record_convergence(event, started)

    def _record_convergence(self, event, started):
        seconds = self.now() - started
        self.authority.record_convergence(event, seconds)
        if event['type'] == 'move':
            metrics.convergence.observe(seconds)

    @set_ev_cls(ofp_event.EventOFPErrorMsg,
                [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @_then_drain
    def _error(self, ev):
        msg = ev.msg
        link = self.links.get(msg.datapath.id)
        change = link.inflight.get(msg.xid) if link else None
        if change is not None and msg.type == ofp.OFPET_METER_MOD_FAILED \
                and msg.code == ofp.OFPMMFC_METER_EXISTS:
            # A meter we did not know of: take it over with a modify.
            link.dp.send_msg(ofmsg.meter_mod(link.dp, 'modify', change[1]))
            return
        self.authority.counters['of_errors'] += 1
        if change is not None:
            # The NVE refused a change: it does not hold what it must (out
            # of sync, visible); the next audit's dump shows the
            # difference and sends it again.
            self._failed_change(
                link, change[0], change[1], 'OFPErrorMsg type=%d code=%d '
                'for %r' % (msg.type, msg.code, change), refused=True)
            return
        self.peer_log.error('OFPErrorMsg from %016x type=%d code=%d',
                            msg.datapath.id or 0, msg.type, msg.code)

    # -- packet-ins --

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @_then_drain
    def _packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        link = self.links.get(dp.id)
        if link is None:
            return
        in_port = msg.match.get('in_port')
        port = dp.ports.get(in_port)
        fields = {'reg6': msg.match.get('reg6', 0),
                  'metadata': msg.match.get('metadata', 0)}
        started = time.perf_counter()
        outs = self.authority.packet_in(
            dp.id, msg.table_id, in_port,
            _port_name(port) if port is not None else None, fields,
            msg.data, self.now())
        metrics.handling_latency.observe(time.perf_counter() - started)
        self._send_outs(outs)
        self._schedule_wakeup()

    def _send_outs(self, outs):
        """Packet-outs leave at the next drain: after the fsync of what
        produced them, and after their NVE's pending flows.  At most
        ``nve_max_queued_packets`` wait per NVE (one that never answers
        its dump would otherwise collect them without end); more are
        dropped and counted."""
        limit = self.conf.nve_max_queued_packets
        for out in outs:
            link = self.links.get(out.dpid)
            if link is None:
                continue
            if len(link.outs) >= limit:
                self.authority.counters['packet_outs_dropped'] += 1
                continue
            link.outs.append(out)
            self._to_flush.add(out.dpid)

    def _packet_out(self, link, out):
        # os-ken's send blocks its caller (our event loop, every NVE's)
        # while the switch's send queue is full: a switch that stops
        # reading gets its packet-outs dropped instead.
        queue = link.dp.send_q
        if queue is None or queue.full():
            self.authority.counters['packet_outs_dropped'] += 1
            return
        link.dp.send_msg(ofmsg.packet_out(link.dp, out.in_port, out.data,
                                          out.actions))

    # -- status for REST and tests --

    def _acknowledged(self, dpid):
        """The NVE answered every change sent to it (whether or not it
        took them all: see ``failed``)."""
        link = self.links[dpid]
        table = self.authority.planner.tables.get(dpid)
        return (link.synced and not (table.pending if table else 0)
                and link.barrier_xid is None and link.dumping is None)

    def sync_status(self, dpid):
        """``in_sync``: the NVE acknowledged everything it must hold, and
        refused nothing of it (nothing failed to encode either)."""
        link = self.links.get(dpid)
        table = self.authority.planner.tables.get(dpid)
        pending = table.pending if table else 0
        if link is None:
            return {'connected': False, 'synced': False, 'in_sync': False,
                    'requested_seq': 0, 'applied_seq': 0,
                    'pending': pending, 'failed': 0}
        return {'connected': True, 'synced': link.synced,
                'requested_seq': link.requested_seq,
                'applied_seq': link.applied_seq, 'pending': pending,
                'failed': len(link.failed),
                'in_sync': self._acknowledged(dpid) and not link.failed}


def _port_name(port):
    name = port.name
    return name.decode('utf-8', 'replace') if isinstance(name, bytes) \
        else name


def _port_up(port):
    return not (port.state & ofp.OFPPS_LINK_DOWN
                or port.config & ofp.OFPPC_PORT_DOWN)
