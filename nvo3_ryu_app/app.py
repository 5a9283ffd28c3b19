"""The os-ken shim: OpenFlow events in, the service's messages out.

Launch::

    osken-manager --ofp-tcp-listen-port 6653 --config-file nvo3.conf \\
        nvo3_ryu_app.app

Everything the app decides or keeps lives in :mod:`service` (plain Python);
this module only wires os-ken's events to it, encodes what it returns
(southbound/ofwire.py) and sends it, runs the timers, and puts the bounds
on what peers may do around os-ken's servers (southbound/ofguard.py for
switches, runtime/ for accept loops and logging).

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

In a cluster of authorities (``cluster_backend = etcd``; docs/contracts.md,
"Cluster") the store is etcd (storage/etcd.py) and four greenlets of this
shim talk to it, each on a connection of its own, and post what they learn
to the loop: the keeper keeps the instance's lease alive (and takes a new
one when it was lost), the watcher streams every change of the cluster's
keys (:class:`EventReplicated`: records for the database, the rest for the
mastership) and reloads everything after a lease loss or a compaction,
the actor writes what the mastership decides (claims, releases, the
instance's OpenFlow connections, the leadership; :class:`EventCluster`
after), and the health checker asks every etcd member how it is.  The
decisions are the service's and southbound/cluster.py's, in the loop.

Who may change the network (docs/contracts.md, authentication): the auth
file is loaded here (and again on SIGHUP) and given to REST and the RPC;
without one, the app refuses to start when REST or the RPC would listen
beyond loopback.  Switch identity is checked when a switch's session is
up (southbound/ofguard.py's ``refusal``): a refused session is closed and
everything it sends, its going down included, is ignored; every OpenFlow
handler here acts only on the session that is its NVE's channel.
"""

import collections
import functools
import logging
import os
import signal
import socket
import sys
import time

import eventlet.hubs
import eventlet.patcher
import greenlet
from eventlet import tpool
from os_ken.base import app_manager
from os_ken.controller import event, ofp_event
from os_ken.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER,
                                       MAIN_DISPATCHER, set_ev_cls)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3 as ofp

from . import checkconfig, gcpolicy, heaptrim, settings
from .authority import declared, persist
from .northbound import auth as auth_mod
from .northbound import metrics
from .runtime import listener, ratelog
from .service import Service
from .authority.errors import MappingError
from .southbound import ofguard, ofparse, ofstats, ofwire, rawpath
from .southbound.channel import SendPacket
from .southbound.cluster import Mastership
from .storage import etcd, store

LOG = logging.getLogger('nvo3_ryu_app')

# Seconds of event handling between two drains at most (latency and REST
# fairness against fewer fsyncs and fuller batches under a burst).
DRAIN_INTERVAL = 0.005
# How much longer than move_probe_timeout an RPC registration waits for the
# verdict on what it takes over (a tick, and the probe's answer, to come).
VERDICT_MARGIN = 1.0
# Seconds a thread waiting for the GIL waits at most: the journal's fsync
# thread must not wait out the loop's planning (the other threads, tpool's,
# run a few lines of Python around a system call).
GIL_SWITCH_INTERVAL = 0.0002
# Switch messages waiting for the loop at most before the switches' receive
# loops wait (TCP then holds the rest back): os-ken's queue held 128 events,
# these are smaller and fill bigger batches.
SWITCH_QUEUE_MAX = 4096
# What os-ken delivers to the app about switches: it goes through the
# switch queue, in order with what southbound/rawpath.py decodes.
_SWITCH_EVENTS = (ofp_event.EventOFPMsgBase, ofp_event.EventOFPStateChange)


class EventCommand(event.EventBase):
    """A write from REST or the RPC, carried to the event loop; ``done`` is
    set once it is committed, durable and its flows are on their way (or,
    for a dry run, once it is known what it would do)."""

    def __init__(self, command, dry_run=False):
        super().__init__()
        self.command = command
        self.dry_run = dry_run
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


class EventReplicated(event.EventBase):
    """What the etcd watch brought (a cluster): ``kind`` 'events' with
    ``[(type, kv)]`` and the revision a progress message vouches for, or
    'reload' with every kv of the prefix at ``revision``."""

    def __init__(self, kind, kvs, revision):
        super().__init__()
        self.kind = kind
        self.kvs = kvs
        self.revision = revision


class EventCluster(event.EventBase):
    """The mastership changed (a claim, a release) or the lease was lost
    (``lost``): the channels' roles follow."""

    def __init__(self, lost=False):
        super().__init__()
        self.lost = lost


class EventBgp(event.EventBase):
    """The BGP EVPN speaker has news (peering/bgp.py: routes, sessions)."""


class EventSwitchMessages(event.EventBase):
    """The switch queue has messages (one such event waits in os-ken's
    queue at a time, however many messages wait behind it)."""


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


class NVO3App(app_manager.OSKenApp):
    """The mapping authority as an os-ken app (see the module doc)."""

    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._refuse_bad_ini()
        self.settings = settings.Settings.from_conf(settings.register())
        # What peers make us log is bounded (runtime/ratelog.py), ours and
        # os-ken's alike.
        limiter = ratelog.RateLimiter(self.settings.peer_log_per_minute)
        ratelog.guard_loggers(limiter)
        self.peer_log = ratelog.PeerLog(LOG, limiter)
        self.cluster = None          # southbound/cluster.py Mastership
        self.auth = self._load_auth()
        try:
            self.service = self._load()
        except (store.StoreError, declared.ConfigError,
                persist.RestoreError, ValueError) as exc:
            # One clear line, not a traceback; never start over a broken
            # store or a bad configuration file.
            if isinstance(exc, persist.RestoreError):
                LOG.error('cannot start: the records in %s do not form a '
                          'consistent mapping database: %s',
                          self.settings.state_dir, exc)
            else:
                LOG.error('cannot start: %s', exc)
            if isinstance(exc, store.StoreCorrupt):
                LOG.error('to start from the last good snapshot, set '
                          '[nvo3] recover_from_snapshot = true')
            raise SystemExit(2) from None
        self.gc_policy = gcpolicy.GcPolicy(
            threshold0=self.settings.gc_threshold0,
            full_interval=self.settings.gc_full_interval)
        self.heap_trimmer = heaptrim.HeapTrimmer(
            interval=self.settings.heap_trim_interval,
            busy_interval=12 * self.settings.heap_trim_interval,
            min_free=self.settings.heap_trim_min_free,
            counters=self.counters)
        if not self.heap_trimmer.available:
            LOG.info('this C library has no malloc_trim: freed heap is not '
                     'given back to the system (heap_trim_interval unused)')
        self.datapaths = {}          # dpid -> os-ken Datapath of its channel
        self.peering = None          # the BGP EVPN speaker (peering/bgp.py)
        self._wakeup = None          # a greenlet sleeping until a deadline
        self._verdict_waiters = {}   # registration vid -> hub.Event
        self._verdicts_decided = []  # vids decided since the last drain
        self.service.authority.verdict_listeners.append(self._on_verdict)
        self._last_drain = time.monotonic()
        # Everything the switches tell the app, in the order they told it:
        # os-ken's events about them and rawpath.py's decoded messages
        # alike, so a packet-in never overtakes its switch's state change
        # or port status (see _send_event).
        self._switch_q = collections.deque()
        self._switch_wake = False    # an EventSwitchMessages is posted
        self._switch_room = hub.Event()
        self._switch_waiters = 0     # receive loops waiting for room
        self._loop_greenlet = None
        self._raw_handlers = {rawpath.PacketIn: self._raw_packet_in,
                              rawpath.BarrierReply: self._raw_barrier_reply}
        backing = self.service.store
        backing.group_commit = True
        if hasattr(backing, 'background_compaction'):
            # Snapshots are written between events, their fsync in a
            # thread (see JournalStore.compact_step).
            backing.background_compaction = True
            backing.offload = tpool.execute
            # The journal's fsync starts as a change is written, in an OS
            # thread, and runs while the flows that wait for it are
            # planned (a move's planning took about as long as the fsync).
            backing.start_early_fsync(eventlet.patcher.original('threading'))
            # That thread needs the GIL to start the fsync: the loop, busy
            # planning, would keep it for the whole switch interval (5 ms
            # by default, longer than the planning it is to overlap).
            sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        self._guard_openflow()
        self._threads = [hub.spawn(self._ticker), hub.spawn(self._auditor),
                         hub.spawn(self._lag_probe),
                         hub.spawn(self._compactor)]
        if self.cluster is not None:
            self._threads += [hub.spawn(self._keeper),
                              hub.spawn(self._watcher),
                              hub.spawn(self._actor),
                              hub.spawn(self._health_checker)]
        self._start_services()
        self.peering = self._start_peering()
        stop_in_main_greenlet()
        self._reload_on_sighup()

    def start(self):
        """os-ken's start, noting which greenlet is the event loop (it
        must never wait for room in its own queues)."""
        super().start()
        self._loop_greenlet = self.threads[-1]

    # -- the switch queue (see __init__) --

    def _send_event(self, ev, state):
        """os-ken's way into this app's queue: events about switches go
        to the switch queue instead, behind the messages the same switches
        sent before them."""
        if isinstance(ev, _SWITCH_EVENTS):
            self._switch_message((False, ev, state))
        else:
            super()._send_event(ev, state)

    def _raw(self, datapath, decoded):
        """ofguard's sink for what rawpath.py decoded (a switch's receive
        loop calls it)."""
        self._switch_message((True, datapath, decoded))

    def _switch_message(self, item):
        if not self.is_active:
            return                   # stopping (see _switch_messages)
        queue = self._switch_q
        if len(queue) >= SWITCH_QUEUE_MAX and \
                greenlet.getcurrent() is not self._loop_greenlet:
            # A receive loop waits, as it waited for room in os-ken's queue.
            self._switch_waiters += 1
            try:
                while len(queue) >= SWITCH_QUEUE_MAX and self.is_active:
                    self._switch_room.clear()
                    self._switch_room.wait(timeout=1.0)
            finally:
                self._switch_waiters -= 1
            if not self.is_active:
                return
        queue.append(item)
        if not self._switch_wake:
            self._switch_wake = True
            self._post_switch_wake()

    def _post_switch_wake(self):
        post = functools.partial(app_manager.OSKenApp._send_event, self,
                                 EventSwitchMessages(), None)
        if greenlet.getcurrent() is self._loop_greenlet:
            hub.spawn(post)          # its own queue may be full: never wait
        else:
            post()

    @set_ev_cls(EventSwitchMessages)
    def _switch_messages(self, _ev):
        """Handle what waits in the switch queue, in order: as many as
        waited when this began (then the queue's turn comes again after
        the other events, such as commands and ticks)."""
        queue = self._switch_q
        room = self._switch_room
        for _ in range(len(queue)):
            if not queue or not self.is_active:
                break
            raw, first, second = queue.popleft()
            if self._switch_waiters and \
                    len(queue) <= SWITCH_QUEUE_MAX // 2:
                # Every waiting receive loop wakes: once per half queue,
                # not once per message.
                room.set()
            try:
                if raw:
                    self._raw_handlers[type(second)](first, second)
                else:
                    for handler in self.get_handlers(first, second):
                        handler(first)
            except hub.TaskExit:
                raise
            except Exception:  # pylint: disable=broad-except
                LOG.exception('handling %s failed', type(
                    second if raw else first).__name__)
        if not self.is_active:
            # Stopping: os-ken's loop handles every event still queued
            # before it ends, and switches go on sending; what they sent
            # is dropped as if it came after the close (nothing of it is
            # committed, the flows are), or a storm would hold the stop.
            queue.clear()
            room.set()
            self._switch_wake = False
        elif queue:
            self._post_switch_wake()
        else:
            self._switch_wake = False

    def _load_auth(self):
        """The auth file's credentials (None without one); one clear line
        and no start for a bad file, or for REST or the RPC listening
        beyond loopback with nothing to check who calls."""
        conf = self.settings
        exposed = auth_mod.exposure(conf)
        if exposed:
            LOG.error('cannot start: %s without an auth_file: anyone who '
                      'reaches it could change the network (set [nvo3] '
                      'auth_file, or listen on 127.0.0.1)', ', '.join(
                          '%s = %s' % item for item in exposed))
            raise SystemExit(2)
        if not conf.auth_file:
            LOG.info('authentication is off (no auth_file): REST and the '
                     'registration RPC listen on loopback only')
            return None
        try:
            found = auth_mod.Auth.load(conf.auth_file)
        except auth_mod.AuthFileError as exc:
            LOG.error('cannot start: %s', exc)
            raise SystemExit(2) from None
        tokens, hypervisors = found.names
        LOG.info('authentication on (%s): tokens %s; hypervisors %s',
                 conf.auth_file, ', '.join(tokens) or 'none',
                 ', '.join(hypervisors) or 'none')
        return found

    def _reload_on_sighup(self):
        """SIGHUP re-reads the auth file; a bad one keeps the old."""
        def reload(_signum, _frame):
            hub.spawn(self.reload_auth)
        try:
            signal.signal(signal.SIGHUP, reload)
        except ValueError:
            LOG.debug('not in the main thread: SIGHUP left as it is')

    def reload_auth(self):
        """Read the auth file again and use it from the next request on."""
        path = self.settings.auth_file
        if not path:
            LOG.info('SIGHUP: no auth_file to re-read')
            return
        try:
            found = auth_mod.Auth.load(path)
        except auth_mod.AuthFileError as exc:
            LOG.error('SIGHUP: %s; the credentials loaded before stay', exc)
            return
        self.auth = self.rest_app.auth = self.rpc_server.auth = found
        LOG.info('SIGHUP: auth file %s re-read', path)

    @staticmethod
    def _refuse_bad_ini():
        """Never start with a misspelled option (oslo.config would ignore
        it without a word) or a value carrying an inline comment (oslo
        keeps it in the value): the checks of checkconfig.py, on every
        ``--config-file`` os-ken was given."""
        from os_ken import cfg as osken_cfg
        problems = []
        for path in osken_cfg.CONF.config_file or ():
            problems += checkconfig.ini_problems(path)[0]
        if problems:
            for problem in problems:
                LOG.error('cannot start: %s', problem)
            raise SystemExit(2)

    def _start_peering(self):
        """The BGP EVPN speaker, with ``bgp_as`` set (contract 7)."""
        if not self.settings.bgp_as:
            return None
        from .authority.evpn import SettingsError
        from .peering.bgp import Peering
        try:
            peering = Peering(self.settings,
                              lambda: self.send_event(self.name, EventBgp()),
                              self.counters, self.peer_log)
        except SettingsError as exc:
            LOG.error('cannot start: %s', exc)
            raise SystemExit(2) from None
        peering.start()
        peering.advertise(self.service.bgp_changes())
        return peering

    def bgp_status(self):
        """``GET /v1/bgp``, or None without BGP."""
        if self.peering is None:
            return None
        status = self.peering.status()
        status['routes'].update(self.service.authority.evpn.figures())
        return status

    @set_ev_cls(EventBgp)
    def _bgp(self, _ev):
        try:
            self.service.bgp_news(self.peering.take_news(), self.now())
        except Exception:  # pylint: disable=broad-except
            LOG.exception('BGP news failed')
        self._drain()

    def _load(self):
        """The store, the service over it, and the configuration file."""
        conf = self.settings
        if conf.cluster_backend:
            return self._load_cluster()
        if conf.persist:
            backing = store.JournalStore(
                conf.state_dir, fsync=conf.store_fsync,
                recover_from_snapshot=conf.recover_from_snapshot)
        else:
            backing = store.MemoryStore()
        service = Service(conf, backing, start_time=self.now(),
                          observe_move=metrics.convergence.observe,
                          log=self.peer_log,
                          observe_migration=metrics.switch_over.observe)
        if conf.config_file:
            service.execute(declared.load(conf.config_file), self.now())
        return service

    # -- a cluster of authorities (see the module doc) --

    def _load_cluster(self):
        """Join the cluster: a lease and our key, the records (the
        database), the cluster's view, then the configuration file."""
        conf = self.settings
        if conf.cluster_backend != 'etcd':
            raise ValueError('cluster_backend must be "etcd" or empty, not '
                             '%r' % conf.cluster_backend)
        prefix = conf.etcd_prefix if conf.etcd_prefix.endswith('/') else \
            conf.etcd_prefix + '/'
        name = conf.instance_name or socket.gethostname()
        if not name or '/' in name:
            raise ValueError('instance_name %r: a name without "/"' % name)

        def client():
            return etcd.EtcdClient(conf.etcd_endpoints,
                                   timeout=conf.etcd_timeout)
        self.etcd_prefix = prefix
        self.cluster = Mastership(name, conf.cluster_lease_ttl)
        self.etcd_keeper = etcd.EtcdCluster(client(), prefix, name)
        self.etcd_actor = etcd.EtcdCluster(client(), prefix, name)
        self.etcd_watch = client()
        self.etcd_health = {}
        self.etcd_reachable = True
        self._reload_wanted = False
        self._actor_wake = hub.Event()
        backing = etcd.EtcdStore(client(), prefix, conf.etcd_max_txn_ops,
                                 instance=name,
                                 private_kinds=persist.PRIVATE_KINDS)
        backing.observe_txn = metrics.etcd_txn.observe
        self._register(self.etcd_keeper)
        service = Service(conf, backing, start_time=self.now(),
                          observe_move=metrics.convergence.observe,
                          log=self.peer_log, cluster=self.cluster)
        kvs, _ = self.etcd_actor.load()
        self._observe_cluster(kvs)
        self.cluster.loaded()
        backing.guard = (self.etcd_keeper.inst_key, self.cluster.lease)
        LOG.info('instance %s joined the cluster at %s (etcd %s, revision '
                 '%d, %d records)', name, prefix,
                 ','.join(conf.etcd_endpoints), backing.revision,
                 backing.stats()['records'])
        if conf.config_file:
            try:
                service.execute(declared.load(conf.config_file), self.now())
                service.sync()
            except MappingError as exc:
                # Another instance applied the same file at the same moment.
                LOG.info('configuration file not applied here: %s', exc)
        return service

    def _register(self, keeper):
        """A new lease, and our key on it."""
        conf = self.settings
        info = {'rest': '%s:%d' % (conf.rest_listen_host,
                                   conf.rest_listen_port),
                'rpc': '%s:%d' % (conf.rpc_listen_host, conf.rpc_listen_port),
                'pid': os.getpid(), 'started': time.time()}
        lease, ttl, asked = keeper.register(conf.cluster_lease_ttl, info)
        self.cluster.registered(lease, ttl, asked)
        LOG.info('etcd lease %x granted for %d s', lease, ttl)

    def _observe_cluster(self, kvs):
        """The cluster's keys among ``kvs`` (a load) into the mastership's
        view."""
        start = len(self.etcd_prefix)
        mono = time.monotonic()
        for kv in kvs:
            key = kv['key'][start:]
            if not key.startswith(etcd.RECORDS):
                self.cluster.observe(key, kv['value'], kv['lease'],
                                     kv['create_revision'], False, mono)

    def _keeper(self):
        """Keep the lease alive every TTL/3; take a new one when it was
        lost (then everything is reloaded before we claim anything)."""
        cluster, keeper = self.cluster, self.etcd_keeper
        while True:
            hub.sleep(self.settings.cluster_lease_ttl / 3.0)
            try:
                if cluster.lease is None:
                    self._register(keeper)
                    self._want_reload()
                    continue
                left, asked = keeper.keepalive(cluster.lease)
                self.etcd_reachable = True
                if cluster.renewed(left, asked):
                    continue
                LOG.warning('etcd lease lost (this instance was frozen or '
                            'cut off from etcd): every NVE is slave here '
                            'until a new lease and a full reload')
                self.service.store.guard = None
                self.send_event(self.name, EventCluster(lost=True))
                self._register(keeper)
                self._want_reload()
            except etcd.EtcdError as exc:
                self.etcd_reachable = False
                self.counters['etcd_keepalive_failures'] += 1
                self.peer_log.warning('etcd keepalive failed: %s', exc)
            except Exception:  # pylint: disable=broad-except
                LOG.exception('lease keeper')     # it must not die

    def _want_reload(self):
        self._reload_wanted = True
        self.etcd_watch.cancel_watches()

    def _watcher(self):
        """Stream the cluster's keys into the loop; reload everything when
        told to (lease lost) or when etcd compacted past us."""
        client, prefix = self.etcd_watch, self.etcd_prefix
        revision = self.service.store.revision
        reload = False
        while True:
            try:
                if reload or self._reload_wanted:
                    self._reload_wanted = False
                    kvs, revision = client.range(prefix)
                    self.send_event(self.name, EventReplicated(
                        'reload', kvs, revision))
                    reload = False
                read_timeout = max(3.0, self.settings.cluster_lease_ttl)
                for events, progress in client.watch(prefix, revision + 1,
                                                     read_timeout):
                    if events:
                        revision = max(revision, max(
                            kv['mod_revision'] for _, kv in events))
                    revision = max(revision, progress)
                    self.send_event(self.name, EventReplicated(
                        'events', events, progress))
                    if self._reload_wanted:
                        break
            except etcd.EtcdCompacted as exc:
                LOG.warning('etcd watch: %s; reloading', exc)
                reload = True
            except etcd.EtcdError as exc:
                LOG.debug('etcd watch restarts: %s', exc)
                client.next_endpoint()
                hub.sleep(0.2)
            except Exception:  # pylint: disable=broad-except
                LOG.exception('etcd watcher')
                hub.sleep(0.5)

    @set_ev_cls(EventReplicated)
    @_then_drain
    def _replicated(self, ev):
        store_ = self.service.store
        now = self.now()
        if ev.kind == 'reload':
            changes = store_.reload_from(ev.kvs, ev.revision,
                                         check=persist.check_record)
            self.cluster.reset()
            self._observe_cluster(ev.kvs)
            self.cluster.loaded()
            if self.cluster.lease is not None:
                store_.guard = (self.etcd_keeper.inst_key, self.cluster.lease)
            cluster_changed = True
            LOG.info('reloaded the cluster\'s state at revision %d (%d '
                     'records changed)', ev.revision, len(changes))
        else:
            changes = store_.observe(ev.kvs, ev.revision)
            cluster_changed = False
            start = len(self.etcd_prefix)
            mono = time.monotonic()
            for typ, kv in ev.kvs:
                key = kv['key'][start:]
                if not key.startswith(etcd.RECORDS):
                    self.cluster.observe(key, kv['value'], kv['lease'],
                                         kv['create_revision'],
                                         typ == 'DELETE', mono)
                    cluster_changed = True
        self.service.apply_replicated(changes, now)
        if cluster_changed:
            self._roles()
            self._actor_wake.set()

    @set_ev_cls(EventCluster)
    @_then_drain
    def _cluster_event(self, ev):
        if ev.lost:
            self.service.lease_lost(self.now())
        self._roles()

    def _roles(self):
        for dpid, msgs in self.service.cluster_changed(self.now()).items():
            self._send(dpid, msgs)

    def _actor(self):
        """Write what the mastership decides: our connections, claims,
        releases, the leadership."""
        cluster, actor = self.cluster, self.etcd_actor
        while True:
            self._actor_wake.wait(timeout=0.5)
            self._actor_wake.clear()
            try:
                actions = cluster.actions(list(self.service.channels),
                                          time.monotonic())
            except Exception:  # pylint: disable=broad-except
                LOG.exception('cluster actions')
                continue
            changed = False
            for action in actions:
                lease = cluster.lease
                if lease is None:
                    break
                try:
                    if action[0] == 'conn':
                        actor.set_conn(lease, action[1], action[2])
                    elif action[0] == 'claim':
                        gen = actor.claim(lease, action[1])
                        if gen is not None:
                            cluster.claimed(action[1], gen)
                            LOG.info('claimed NVE %016x (generation %d)',
                                     action[1], gen)
                            changed = True
                    elif action[0] == 'release':
                        if actor.release(lease, action[1]):
                            LOG.info('released NVE %016x', action[1])
                        else:
                            cluster.releasing.discard(action[1])
                        changed = True
                    elif action[0] == 'lead':
                        if actor.lead(lease):
                            LOG.info('leading the cluster')
                    self.etcd_reachable = True
                except etcd.EtcdError as exc:
                    self.etcd_reachable = False
                    if action[0] == 'release':
                        cluster.releasing.discard(action[1])
                    self.peer_log.warning('etcd %s failed: %s', action[0],
                                          exc)
                    break
                except Exception:  # pylint: disable=broad-except
                    LOG.exception('cluster action %r', action)
            if changed:
                self.send_event(self.name, EventCluster())

    def _health_checker(self):
        """Every etcd member's own health, for /v1/cluster and metrics."""
        client = etcd.EtcdClient(self.settings.etcd_endpoints, timeout=1.0)
        while True:
            try:
                self.etcd_health = client.health(timeout=1.0)
            except Exception:  # pylint: disable=broad-except
                LOG.exception('etcd health')
            hub.sleep(2.0)

    def cluster_status(self):
        """What ``GET /v1/cluster`` shows (docs/contracts.md, "Cluster")."""
        if self.cluster is None:
            return self.service.cluster_status(
                self.settings.instance_name or socket.gethostname())
        out = self.service.cluster_status()
        backing = self.service.store
        out['backend'] = 'etcd'
        out['etcd'] = {
            'endpoints': [{'endpoint': e, 'healthy': ok}
                          for e, ok in sorted(self.etcd_health.items())],
            'reachable': self.etcd_reachable, 'prefix': self.etcd_prefix,
            'revision': backing.revision,
            'last_txn_ms': round(backing.last_txn_ms, 3)}
        return out

    def close(self):
        """Stopping: a cluster instance gives its lease back, so the others
        take its NVEs over at once instead of after the lease's TTL."""
        cluster = getattr(self, 'cluster', None)
        if cluster is not None and cluster.lease is not None:
            lease, cluster.lease = cluster.lease, None
            try:
                self.etcd_keeper.resign(lease)
            except Exception:  # pylint: disable=broad-except
                LOG.info('could not give the etcd lease back')
        super().close()

    def _guard_openflow(self):
        """What switches may do to this process, bounded (os-ken is not
        edited; see southbound/ofguard.py and runtime/listener.py): every
        length os-ken's parser trusts is checked before it runs, a switch
        that sends nonsense is dropped; the OpenFlow accept loop survives
        running out of descriptors, holds at most of_max_connections and
        closes a connection that has not finished its handshake in time."""
        conf, counters = self.settings, self.counters

        def rejected(datapath, msg_type, reason):
            counters['of_bad_messages'] += 1
            self.peer_log.warning(
                'OpenFlow message type %d from %s rejected: %s; '
                'disconnecting', msg_type,
                getattr(datapath, 'address', '?'), reason)

        def ignored(_datapath, _msg_type, _reason):
            counters['of_ignored_messages'] += 1

        # Packet-ins and barrier replies go to the app straight from their
        # bytes (rawpath.py); flow dumps are read from their bytes into
        # os-ken's reply objects (ofstats.py): os-ken's parse costs more than
        # everything else either does.
        ofguard.install(rejected, ignored, on_raw=self._raw,
                        fast=ofstats.fast_msg)
        ofguard.install_openflow(conf.of_max_connections,
                                 conf.of_handshake_timeout, counters,
                                 self.peer_log)
        # Room for every connection the servers allow, and some.
        listener.raise_descriptor_limit(
            conf.of_max_connections + conf.rest_max_connections
            + conf.rpc_max_connections + 256)

    def _start_services(self):
        from .northbound import registration, rest
        conf = self.settings
        rest_tls = self._tls('rest', conf.rest_tls_cert, conf.rest_tls_key)
        rpc_tls = self._tls('rpc', conf.rpc_tls_cert, conf.rpc_tls_key)
        self.rest_app = rest.make_app(self,
                                      allowed_hosts=conf.rest_allowed_hosts,
                                      auth=self.auth)
        self.rest_server = rest.Server(
            self.rest_app, listener.listen(conf.rest_listen_host,
                                           conf.rest_listen_port),
            max_connections=conf.rest_max_connections,
            idle_timeout=conf.rest_idle_timeout,
            request_timeout=conf.rest_request_timeout,
            counters=self.counters, log=self.peer_log, tls=rest_tls)
        self._threads.append(hub.spawn(self.rest_server.serve_forever))
        self.rpc_server = registration.RegistrationServer(
            self, max_connections=conf.rpc_max_connections,
            idle_timeout=conf.rpc_idle_timeout,
            request_timeout=conf.rpc_request_timeout, log=self.peer_log,
            auth=self.auth, tls=rpc_tls)
        self._threads.append(hub.spawn(
            self.rpc_server.serve, conf.rpc_listen_host,
            conf.rpc_listen_port))
        LOG.info('REST on %s://%s:%d, registration RPC on %s:%d%s',
                 'https' if rest_tls else 'http', conf.rest_listen_host,
                 conf.rest_listen_port, conf.rpc_listen_host,
                 conf.rpc_listen_port, ' (TLS)' if rpc_tls else '')

    @staticmethod
    def _tls(what, cert, key):
        """The TLS context of REST or the RPC, None without a certificate;
        one clear line and no start when only half of it is given or it
        cannot be loaded."""
        if not cert and not key:
            return None
        if not (cert and key):
            LOG.error('cannot start: %s_tls_cert and %s_tls_key go together',
                      what, what)
            raise SystemExit(2)
        try:
            return listener.server_context(cert, key)
        except (OSError, ValueError) as exc:
            LOG.error('cannot start: %s TLS certificate %s / key %s: %s',
                      what, cert, key, exc)
            raise SystemExit(2) from None

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

    def trace(self, vn, src, dst, kind='auto', at=None):
        """A frame's fate on the flows the authority holds (read from the
        REST greenlet: it never yields half-way)."""
        return self.service.trace(vn, src, dst, kind, at)

    def execute(self, command, dry_run=False):
        """Run one command in the event loop and wait for it (called from a
        REST or RPC greenlet): its result once it is durable and its flows
        are on their way, or its error raised here.  ``dry_run``: what it
        would do (authority/dryrun.py), nothing done."""
        ev = EventCommand(command, dry_run)
        self.send_event(self.name, ev)
        ev.done.wait()
        if ev.error is not None:
            raise ev.error
        return ev.result

    def wait_verdict(self, vid, timeout=None):
        """The verdict on registration ``vid`` the authority is verifying
        (``(result, error)``), waiting for it in the caller's greenlet at
        most ``move_probe_timeout`` and a margin; None if it is still out."""
        if timeout is None:
            timeout = self.settings.move_probe_timeout + VERDICT_MARGIN
        authority = self.service.authority
        waiter = self._verdict_waiters[vid] = hub.Event()
        try:
            if vid not in self._verdicts_decided:
                verdict = authority.take_verdict(vid)
                if verdict is not None:
                    return verdict
            waiter.wait(timeout=timeout)
            if vid in self._verdicts_decided:
                return None          # decided, not yet durable: pending
            return authority.take_verdict(vid)
        finally:
            self._verdict_waiters.pop(vid, None)

    def _on_verdict(self, vid):
        # The caller hears the verdict after the next drain: what it changed
        # is durable, and its flows on their way, before the RPC answers.
        self._verdicts_decided.append(vid)

    def _release_verdicts(self):
        decided, self._verdicts_decided = self._verdicts_decided, []
        for vid in decided:
            waiter = self._verdict_waiters.get(vid)
            if waiter is not None:
                waiter.set()

    @set_ev_cls(EventCommand)
    def _command(self, ev):
        try:
            try:
                ev.result = self.service.execute(ev.command, self.now(),
                                                 dry_run=ev.dry_run)
            except Exception as exc:  # pylint: disable=broad-except
                ev.error = exc        # raised in the caller's greenlet
            try:
                self._disconnect_deleted()
                self._drain(raise_refused=True)
                self._schedule_wakeup()     # a registration's probe deadline
            except Exception as exc:  # pylint: disable=broad-except
                if ev.error is None:
                    ev.error = exc
        finally:
            ev.done.set()

    def _disconnect_deleted(self):
        """Switches whose NVE record a command deleted: their sessions are
        closed, and nothing they still send is heard."""
        for dpid in self.service.take_disconnects():
            dp = self.datapaths.pop(dpid, None)
            if dp is not None:
                LOG.info('NVE %016x deleted: its session is closed', dpid)
                ofguard.drop(dp)

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
        self._check_liveness()
        self._drain()
        self.gc_policy.tick()
        counters = self.counters
        self.heap_trimmer.tick(counters['packet_in'] + counters['flow_mods'])
        self._schedule_wakeup()

    def _check_liveness(self):
        """Echo the NVEs, and disconnect those that leave an echo, a
        barrier or their dump unanswered (service.check_liveness, on the
        monotonic clock).  An NVE whose send queue is full gets no echo
        now: os-ken's send would block this loop."""
        busy = {dpid for dpid, dp in self.datapaths.items()
                if dp.send_q is None or dp.send_q.full()}
        sends, overdue = self.service.check_liveness(time.monotonic(), busy)
        for dpid in overdue:
            dp = self.datapaths.get(dpid)
            if dp is not None:
                ofguard.drop(dp)
        for dpid, msgs in sends.items():
            self._send(dpid, msgs)

    @set_ev_cls(ofp_event.EventOFPEchoReply, MAIN_DISPATCHER)
    def _echo_reply(self, ev):
        if self._current(ev.msg.datapath):
            self.service.echo_reply(ev.msg.datapath.id, ev.msg.xid,
                                    time.monotonic())

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
        the event loop parsing flow stats for longer than the interval.
        NVEs in sync by their stamp alone are verified first, one per
        ``stamp_verify_interval`` (also with audits off)."""
        while True:
            conf = self.settings
            waits = []
            if conf.audit_interval > 0:
                waits.append(max(0.05, conf.audit_interval
                                 / max(1, len(self.datapaths))))
            if conf.stamp_verify_interval > 0 and self.service.unverified():
                waits.append(conf.stamp_verify_interval)
            if not waits:
                hub.sleep(1.0)
                continue
            hub.sleep(min(waits))
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

    def _current(self, dp):
        """Whether ``dp`` is its NVE's channel: a refused or replaced
        session's messages (it may present a connected NVE's datapath id)
        are never taken for the NVE's."""
        return dp.id is not None and self.datapaths.get(dp.id) is dp

    def _refuse(self, dp):
        """The switch identity check (ofguard.refusal) of a session that
        just came up: True if it was refused, and closed."""
        old = self.datapaths.get(dp.id)
        found = ofguard.refusal(
            dp.id, ofguard.peer_certificate(dp),
            old is not None and old is not dp and ofguard.session_live(old),
            self.views.has_nve(dp.id), self.settings.accept_unknown_nves)
        if found is None:
            return False
        reason, detail = found
        self.counters['of_refused_' + reason] += 1
        self.peer_log.warning('OpenFlow session from %s as NVE %016x '
                              'refused: %s', dp.address, dp.id, detail)
        ofguard.drop(dp)
        return True

    @set_ev_cls(ofp_event.EventOFPStateChange,
                [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_then_drain
    def _state_change(self, ev):
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            if dp.state == DEAD_DISPATCHER or self._refuse(dp):
                return
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
        if self.cluster is not None:
            self._actor_wake.set()

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    @_then_drain
    def _role_reply(self, ev):
        msg = ev.msg
        if not self._current(msg.datapath):
            return
        role = {ofp.OFPCR_ROLE_MASTER: 'master', ofp.OFPCR_ROLE_SLAVE: 'slave',
                ofp.OFPCR_ROLE_EQUAL: 'equal'}.get(msg.role, 'nochange')
        self.service.role_reply(msg.datapath.id, role, msg.generation_id,
                                self.now())

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @_then_drain
    def _port_status(self, ev):
        msg = ev.msg
        if not self._current(msg.datapath):
            return
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
        if not self._current(msg.datapath):
            return
        flows = getattr(msg, 'flows', None)     # read by ofstats.py
        if flows is None:
            flows = [(ofparse.flow_from_stats(s), s.packet_count,
                      s.byte_count) for s in msg.body]
        self._send(msg.datapath.id, self.service.flow_stats(
            msg.datapath.id, flows, bool(msg.flags & ofp.OFPMPF_REPLY_MORE),
            self.now()))

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    @_then_drain
    def _meter_config(self, ev):
        msg = ev.msg
        if not self._current(msg.datapath):
            return
        self.service.meter_config(
            msg.datapath.id, [ofparse.meter_from_config(s) for s in msg.body],
            bool(msg.flags & ofp.OFPMPF_REPLY_MORE), self.now())

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @_then_drain
    def _barrier_reply(self, ev):
        if self._current(ev.msg.datapath):
            self.service.barrier_reply(ev.msg.datapath.id, ev.msg.xid)

    def _raw_barrier_reply(self, dp, msg):
        """A barrier reply rawpath.py decoded."""
        try:
            if self._current(dp):
                self.service.barrier_reply(dp.id, msg.xid)
        finally:
            self._after_event()

    @set_ev_cls(ofp_event.EventOFPErrorMsg,
                [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @_then_drain
    def _error(self, ev):
        msg = ev.msg
        dpid = msg.datapath.id
        if dpid is not None and not self._current(msg.datapath):
            # A refused session's, or one still in its handshake: nothing
            # of the NVE's channel.
            self.counters['of_errors'] += 1
            self.peer_log.warning(
                'OpenFlow error type=%d code=%d from a session of %016x '
                'that is not its channel', msg.type, msg.code, dpid)
            return
        self._send(dpid, self.service.error(
            dpid, msg.xid, msg.type, msg.code,
            meter_exists=(msg.type == ofp.OFPET_METER_MOD_FAILED
                          and msg.code == ofp.OFPMMFC_METER_EXISTS)))

    # -- packet-ins --

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @_then_drain
    def _packet_in(self, ev):
        msg = ev.msg
        self._handle_packet_in(
            msg.datapath, msg.table_id, msg.match.get('in_port'),
            msg.match.get('reg6', 0), msg.match.get('metadata', 0),
            msg.cookie, msg.data)

    def _raw_packet_in(self, dp, msg):
        """A packet-in rawpath.py decoded."""
        try:
            self._handle_packet_in(dp, msg.table_id, msg.in_port, msg.reg6,
                                   msg.metadata, msg.cookie, msg.data)
        finally:
            self._after_event()

    def _handle_packet_in(self, dp, table_id, in_port, reg6, metadata,
                          cookie, data):
        if not self._current(dp):
            return
        port = dp.ports.get(in_port)
        fields = {'reg6': reg6, 'metadata': metadata, 'cookie': cookie}
        started = time.perf_counter()
        self.service.packet_in(
            dp.id, table_id, in_port,
            ofparse.port_name(port) if port is not None else None, fields,
            data, self.now())
        metrics.handling_latency.observe(time.perf_counter() - started)
        self._schedule_wakeup()

    # -- the one place that sends --

    def _after_event(self):
        """Drain when os-ken's queue is empty (nothing else to batch with)
        or ``DRAIN_INTERVAL`` after the last drain, then let other greenlets
        run (os-ken's loop only yields when its queue is empty: REST and RPC
        would otherwise wait for the end of a packet-in burst)."""
        if self._idle() or \
                time.monotonic() - self._last_drain >= DRAIN_INTERVAL:
            self._drain()
            hub.sleep(0)

    def _idle(self):
        """Nothing waits in os-ken's queue or the switch queue."""
        return self.events.empty() and not self._switch_q

    def _drain(self, raise_refused=False):
        """Everything committed so far is made durable, then sent.  A
        cluster's store may refuse (the database is then back to what etcd
        holds, service.sync): raised for a command (its caller is told),
        counted and logged otherwise; what is left to send goes anyway."""
        self._last_drain = time.monotonic()
        refused = None
        try:
            # Under load the fsync runs in a thread while REST and os-ken's
            # receive loops go on; with nothing else waiting, inline is
            # faster (a thread hand-off costs attach latency).
            self.service.sync(offload=not self._idle(), now=self.now())
        except MappingError as exc:
            refused = exc
            self.peer_log.warning('changes not committed: %s', exc.message)
        for dpid, msgs in self.service.flush(self.now()).items():
            self._send(dpid, msgs)
        if refused is not None:
            # A registration decided in what etcd refused is not what the
            # cluster holds: its caller hears the refusal, not the verdict.
            for vid in self._verdicts_decided:
                self.service.authority.verdicts[vid] = (None, refused)
        if self.peering is not None:
            self.peering.advertise(self.service.bgp_changes())
        self._release_verdicts()
        if refused is not None and raise_refused:
            raise refused

    def _send(self, dpid, msgs):
        """Send an NVE its messages as one write (one send-queue entry, one
        system call), in order.  A change that cannot be encoded is left
        out and reported to its channel (the rest go)."""
        dp = self.datapaths.get(dpid)
        if dp is None or not msgs:
            return
        queue = dp.send_q
        if queue is None or queue.full():
            # os-ken's send blocks its caller (this loop, every NVE's)
            # while the switch's send queue is full: a switch that stops
            # reading gets its packet-outs dropped instead.
            kept = [msg for msg in msgs if type(msg) is not SendPacket]
            self.counters['packet_outs_dropped'] += len(msgs) - len(kept)
            msgs = kept
            if not msgs:
                return
        data, failed = ofwire.encode_all(msgs)
        if failed:
            self.service.unencodable(dpid, failed)
        dp.send(data)
