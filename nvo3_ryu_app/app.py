"""The os-ken shim: OpenFlow events in, the service's messages out.

Launch::

    osken-manager --ofp-tcp-listen-port 6653 --config-file nvo3.conf \\
        nvo3_ryu_app.app

Everything the app decides or keeps lives in :mod:`service` (plain Python);
this module only wires os-ken's events to it, encodes what it returns
(southbound/ofwire.py) and sends it, and runs the timers.

One loop: every write and every timer is handled in os-ken's event loop.
REST and RPC handlers post an :class:`EventCommand` (``self.events``, os-ken's
queue, carries it) and wait for its result; the ticker and the auditor post
:class:`EventTick` and :class:`EventAuditDue`.  Reads (REST GETs, metrics)
read the service's state from their own greenlet: a read never yields
half-way.  The drain (the store's fsync first, then each NVE's batch and
packet-outs) happens in this loop only: after a command at once (its
caller is answered once it is durable and its flows are on their way),
otherwise when os-ken's queue runs empty or ``DRAIN_INTERVAL`` after the
last drain at the latest, so a burst of packet-ins shares one fsync and
fills batches, and REST still gets its turn.
"""

import functools
import logging
import time

from eventlet import tpool
from os_ken.base import app_manager
from os_ken.controller import event, ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER,
                                       MAIN_DISPATCHER, set_ev_cls)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3 as ofp

from . import gcpolicy, settings
from .authority import declared
from .northbound import metrics
from .service import Service
from .southbound import ofparse, ofwire
from .storage import store

LOG = logging.getLogger('nvo3_ryu_app')

# Seconds of event handling between two drains at most (latency and REST
# fairness against fewer fsyncs and fuller batches under a burst).
DRAIN_INTERVAL = 0.005


class EventCommand(event.EventBase):
    """A write from REST or the RPC, carried to the event loop; ``done`` is
    set once it is committed, durable and its flows are on their way."""

    def __init__(self, command):
        super().__init__()
        self.command = command
        self.result = None
        self.error = None
        self.done = hub.Event()


class EventAudit(event.EventBase):
    """A REST request to audit one NVE now; ``started`` is set once the
    loop tried (``ok``: the dump was requested)."""

    def __init__(self, dpid, report):
        super().__init__()
        self.dpid = dpid
        self.report = report
        self.ok = False
        self.started = hub.Event()


class EventTick(event.EventBase):
    """Time passed (the ticker, or a probe deadline)."""


class EventAuditDue(event.EventBase):
    """The auditor's turn: audit the NVE most overdue, if one is."""


def _then_drain(handler):
    """An os-ken event handler after which pending sends may leave."""
    @functools.wraps(handler)
    def wrapper(self, ev):
        try:
            handler(self, ev)
        finally:
            self._after_event()
    return wrapper


class NVO3App(app_manager.OSKenApp):
    """The mapping authority as an os-ken app (see the module doc)."""

    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = settings.Settings.from_conf(settings.register())
        try:
            self.service = self._load()
        except (store.StoreError, declared.ConfigError) as exc:
            # One clear line, not a traceback; never start over a broken
            # store or a bad configuration file.
            LOG.error('cannot start: %s', exc)
            if isinstance(exc, store.StoreCorrupt):
                LOG.error('to start from the last good snapshot, set '
                          '[nvo3] recover_from_snapshot = true')
            raise SystemExit(2) from None
        self.gc_policy = gcpolicy.GcPolicy(
            threshold0=self.settings.gc_threshold0,
            full_interval=self.settings.gc_full_interval)
        self.datapaths = {}          # dpid -> os-ken Datapath of its channel
        self._wakeup = None          # a greenlet sleeping until a deadline
        self._last_drain = time.monotonic()
        backing = self.service.store
        backing.group_commit = True
        if hasattr(backing, 'background_compaction'):
            # Snapshots are written between events, their fsync in a
            # thread (see JournalStore.compact_step).
            backing.background_compaction = True
            backing.offload = tpool.execute
        self._threads = [hub.spawn(self._ticker), hub.spawn(self._auditor),
                         hub.spawn(self._lag_probe),
                         hub.spawn(self._compactor)]
        self._start_services()

    def _load(self):
        """The store, the service over it, and the configuration file."""
        conf = self.settings
        if conf.persist:
            backing = store.JournalStore(
                conf.state_dir, fsync=conf.store_fsync,
                recover_from_snapshot=conf.recover_from_snapshot)
        else:
            backing = store.MemoryStore()
        service = Service(conf, backing, start_time=self.now(),
                          observe_move=metrics.convergence.observe)
        if conf.config_file:
            service.execute(declared.load(conf.config_file), self.now())
        return service

    def _start_services(self):
        from .northbound import registration, rest
        conf = self.settings
        self.rest_app = rest.make_app(self)
        self._threads.append(hub.spawn(
            hub.WSGIServer((conf.rest_listen_host, conf.rest_listen_port),
                           self.rest_app).serve_forever))
        self.rpc_server = registration.RegistrationServer(self)
        self._threads.append(hub.spawn(
            self.rpc_server.serve, conf.rpc_listen_host,
            conf.rpc_listen_port))
        LOG.info('REST on %s:%d, registration RPC on %s:%d',
                 conf.rest_listen_host, conf.rest_listen_port,
                 conf.rpc_listen_host, conf.rpc_listen_port)

    @staticmethod
    def now():
        """The time every decision is given."""
        return time.time()

    # -- what REST and the RPC use (see northbound/rest/server.py) --

    @property
    def views(self):
        """Read-only views of the mapping database."""
        return self.service.views

    @property
    def event_log(self):
        """The authority's event log."""
        return self.service.event_log

    @property
    def counters(self):
        """The app's counters."""
        return self.service.counters

    def store_stats(self):
        """The store's figures."""
        return self.service.store_stats()

    def sync_status(self, dpid):
        """Whether NVE ``dpid`` acknowledged all its flows."""
        return self.service.sync_status(dpid)

    def execute(self, command):
        """Run one command in the event loop and wait for it (called from a
        REST or RPC greenlet): its result once it is durable and its flows
        are on their way, or its error raised here."""
        ev = EventCommand(command)
        self.send_event(self.name, ev)
        ev.done.wait()
        if ev.error is not None:
            raise ev.error
        return ev.result

    @set_ev_cls(EventCommand)
    def _command(self, ev):
        try:
            try:
                ev.result = self.service.execute(ev.command, self.now())
            except Exception as exc:  # pylint: disable=broad-except
                ev.error = exc        # raised in the caller's greenlet
            try:
                self._drain()
            except Exception as exc:  # pylint: disable=broad-except
                if ev.error is None:
                    ev.error = exc
        finally:
            ev.done.set()

    def audit_now(self, dpid, timeout=10.0):
        """Dump one NVE now and say how it differs from what the database
        implies (before the audit repairs it).  Blocks only the caller's
        greenlet (a REST request), never the event loop."""
        deadline = time.time() + timeout
        done = hub.Event()
        result = {}

        def report(found):
            result.update(found)
            done.set()
        while True:
            if dpid not in self.datapaths:
                return None
            ev = EventAudit(dpid, report)
            self.send_event(self.name, ev)
            ev.started.wait()
            if ev.ok:
                break
            if time.time() > deadline:
                return None
            hub.sleep(0.01)
        done.wait(timeout=max(0.1, deadline - time.time()))
        return result or None

    @set_ev_cls(EventAudit)
    def _audit(self, ev):
        try:
            msgs = self.service.start_audit(ev.dpid, ev.report)
            ev.ok = bool(msgs)
            self._send(ev.dpid, msgs)
        finally:
            ev.started.set()

    # -- timers: they post events to the loop --

    def _ticker(self):
        while True:
            hub.sleep(self.settings.tick_interval)
            self.send_event(self.name, EventTick())

    @set_ev_cls(EventTick)
    def _tick(self, _ev):
        try:
            self.service.tick(self.now())
        except Exception:  # pylint: disable=broad-except
            LOG.exception('tick failed')
        self._drain()
        self.gc_policy.tick()
        self._schedule_wakeup()

    def _schedule_wakeup(self):
        """Probe deadlines are shorter than a tick: wake up for them."""
        due = self.service.next_wakeup()
        if due is None or self._wakeup is not None:
            return
        delay = max(0.0, due - self.now())
        if delay >= self.settings.tick_interval:
            return

        def wake():
            hub.sleep(delay)
            self._wakeup = None
            self.send_event(self.name, EventTick())
        self._wakeup = hub.spawn(wake)

    def _auditor(self):
        """Audit every NVE once per ``audit_interval``, one at a time and
        spread over the interval: dumping a whole fleet at once would keep
        the event loop parsing flow stats for longer than the interval."""
        while True:
            interval = self.settings.audit_interval
            if interval <= 0:
                hub.sleep(60)
                continue
            hub.sleep(max(0.05, interval / max(1, len(self.datapaths))))
            self.send_event(self.name, EventAuditDue())

    @set_ev_cls(EventAuditDue)
    def _audit_due(self, _ev):
        due = self.service.audit_next(self.now())
        if due is not None:
            self._send(*due)

    def _compactor(self):
        """Write a snapshot being made a slice at a time, between events."""
        backing = self.service.store
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

    # -- connection life cycle --

    @set_ev_cls(ofp_event.EventOFPStateChange,
                [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_then_drain
    def _state_change(self, ev):
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            old = self.datapaths.get(dp.id)
            if old is not None and old is not dp:
                LOG.info('NVE %016x reconnected', dp.id)
            self.datapaths[dp.id] = dp
            # os-ken's own transaction ids (echo requests) stay below the
            # channel's (southbound/channel.py).
            dp.xid = 0
            ports, mac = ofparse.switch_ports(dp.ports.values())
            self._send(dp.id, self.service.switch_connected(
                dp.id, ports, mac, self.now()))
        elif ev.state == DEAD_DISPATCHER:
            if self.datapaths.get(dp.id) is not dp:
                return
            del self.datapaths[dp.id]
            self.service.switch_disconnected(dp.id, self.now())

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @_then_drain
    def _port_status(self, ev):
        msg = ev.msg
        port = msg.desc
        if port.port_no >= ofp.OFPP_MAX:
            return
        up = msg.reason != ofp.OFPPR_DELETE and ofparse.port_up(port)
        self.service.port_changed(
            msg.datapath.id, ofparse.port_name(port),
            port.port_no if up else None, self.now())

    # -- dumps --

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @_then_drain
    def _flow_stats(self, ev):
        msg = ev.msg
        self.service.flow_stats(
            msg.datapath.id,
            [(ofparse.flow_from_stats(s), s.packet_count) for s in msg.body],
            bool(msg.flags & ofp.OFPMPF_REPLY_MORE), self.now())

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    @_then_drain
    def _meter_config(self, ev):
        msg = ev.msg
        self.service.meter_config(
            msg.datapath.id, [ofparse.meter_from_config(s) for s in msg.body],
            bool(msg.flags & ofp.OFPMPF_REPLY_MORE), self.now())

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @_then_drain
    def _barrier_reply(self, ev):
        self.service.barrier_reply(ev.msg.datapath.id, ev.msg.xid)

    @set_ev_cls(ofp_event.EventOFPErrorMsg,
                [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @_then_drain
    def _error(self, ev):
        msg = ev.msg
        dpid = msg.datapath.id
        self._send(dpid, self.service.error(
            dpid, msg.xid, msg.type, msg.code,
            meter_exists=(msg.type == ofp.OFPET_METER_MOD_FAILED
                          and msg.code == ofp.OFPMMFC_METER_EXISTS)))

    # -- packet-ins --

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @_then_drain
    def _packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        if dp.id not in self.datapaths:
            return
        in_port = msg.match.get('in_port')
        port = dp.ports.get(in_port)
        fields = {'reg6': msg.match.get('reg6', 0),
                  'metadata': msg.match.get('metadata', 0)}
        started = time.perf_counter()
        self.service.packet_in(
            dp.id, msg.table_id, in_port,
            ofparse.port_name(port) if port is not None else None, fields,
            msg.data, self.now())
        metrics.handling_latency.observe(time.perf_counter() - started)
        self._schedule_wakeup()

    # -- the one place that sends --

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
        # (a thread hand-off costs attach latency).
        self.service.sync(offload=not self.events.empty())
        for dpid, msgs in self.service.flush(self.now()).items():
            self._send(dpid, msgs)

    def _send(self, dpid, msgs):
        """Send an NVE its messages as one write (one send-queue entry, one
        system call), in order."""
        dp = self.datapaths.get(dpid)
        if dp is None or not msgs:
            return
        dp.send(b''.join(ofwire.encode(msg) for msg in msgs))
