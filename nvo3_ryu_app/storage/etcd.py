"""The mapping database's records in etcd, for a cluster of authorities.

:class:`EtcdStore` is a :class:`~.store.Store` (load, commit, sync, stats)
whose records live in an etcd cluster (Debian's ``etcd-server``, API v3,
through its gRPC gateway: JSON over HTTP), so that several app instances
share one mapping database and each keeps a live copy of it.  Like the
journal it knows nothing of VNs or NVEs: a record is a ``kind`` and a
``key`` with a msgpack-able dict as value, so a new kind of record is
replicated with no change here.

Keys, under ``prefix`` (``/nvo3/v1/`` by default)::

    rec/<kind>/<key as JSON>      a record; value: msgpack of the dict; no lease
    inst/<instance>               a live instance (JSON: its addresses); its lease
    conn/<dpid>/<instance>        the instance has an OpenFlow channel to the NVE
    owner/<dpid>                  the NVE's master; generation = create revision
    leader                        the instance that decides for unowned NVEs

Only ``rec/`` is this store's; the others belong to the cluster's
mastership (southbound/cluster.py decides, :class:`EtcdCluster` writes).

Writes (``commit`` buffers, ``sync`` sends: group commit, as the journal
does): the changes of every commit since the last sync go as one
transaction (split when they exceed ``max_txn_ops``; a single commit is
split only when it alone does), guarded by

* ``LEASE(inst/<me>) == my lease``: an instance whose lease expired (frozen,
  cut off from etcd) can write nothing;
* ``MOD(key) == the revision the change was computed from`` for every key
  written: two instances that change the same record at once cannot both
  win.

``sync`` returns once etcd committed (a majority of its members has the
change: durable).  A refused or failed transaction raises
:class:`StoreRefused`, which carries the value each of its records has in
etcd now (or, when etcd could not be asked, the last value this store
knew), so the caller puts its database back in step and refuses what
depended on it.  A transaction whose answer was lost (a timeout) may have
been applied all the same: its records are put back to what was known,
and the watch brings them forward if it was.

The live copy: :meth:`load` reads the whole prefix at one revision
(linearizable), :meth:`EtcdClient.watch` streams every change after it, and
:meth:`observe` turns watched record events into changes the database has
not seen (a store knows the revision of each record it holds, so its own
writes coming back, and anything older than what it already has, are
skipped).  A watch cancelled by compaction means a full :meth:`reload`,
which returns the difference.

The client is the standard library's ``http.client`` on keep-alive
connections (no dependency; under osken-manager its sockets are eventlet's,
so calls yield to other greenlets, never block the hub), rotating to the
next endpoint when one fails.  Every read is linearizable: a member cut off
from the others answers serializable reads with stale data.
"""

import base64
import http.client
import json
import logging
import time

import msgpack

from .store import Store, StoreError, _key_in, _key_out

LOG = logging.getLogger(__name__)

DEFAULT_PREFIX = '/nvo3/v1/'
RECORDS = 'rec/'


class EtcdError(StoreError):
    """etcd refused a request, or answered something unexpected."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered (down, cut off, no leader, timed out)."""


class EtcdCompacted(EtcdError):
    """A watch asked for revisions etcd no longer keeps: reload."""

    def __init__(self, revision):
        super().__init__('revision compacted (etcd keeps %s and later)'
                         % revision)
        self.revision = revision


class StoreRefused(StoreError):
    """A sync whose changes were not (or may not have been) committed.

    ``records`` maps ``(kind, key)`` to the value etcd holds now (None:
    no such record), for every record of the refused transaction: the
    caller puts its database back to them.  ``conflict``: another instance
    changed one of them first (retry), rather than etcd being out of reach
    or the lease gone (``reason`` says which)."""

    def __init__(self, reason, records, conflict=False):
        super().__init__(reason)
        self.reason = reason
        self.records = records
        self.conflict = conflict


# --- encoding -----------------------------------------------------------------

def b64(data):
    """Base64 text of ``data`` (str or bytes), as the gateway wants it."""
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode('ascii')


def unb64(text):
    """Bytes of gateway base64 text."""
    return base64.b64decode(text or '')


def prefix_end(prefix):
    """The range end that covers every key starting with ``prefix``."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


def record_key(prefix, kind, key):
    """The etcd key of record ``(kind, key)``: ``<prefix>rec/<kind>/<JSON>``,
    readable with ``etcdctl get --prefix`` and unambiguous (JSON tells an
    int from a str)."""
    if '/' in kind:
        raise TypeError('a record kind has no "/": %r' % (kind,))
    return '%s%s%s/%s' % (prefix, RECORDS, kind, json.dumps(
        _key_out(key), separators=(',', ':')))


def parse_record_key(prefix, text):
    """``(kind, key)`` of an etcd key made by :func:`record_key`."""
    kind, _, key = text[len(prefix) + len(RECORDS):].partition('/')
    return kind, _key_in(json.loads(key))


def pack_value(value):
    """Record value as stored (msgpack, like the journal's)."""
    return msgpack.packb(value, use_bin_type=True)


def unpack_value(data):
    """A stored record value."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


# --- the client -----------------------------------------------------------------

def parse_endpoints(endpoints):
    """``[(host, port)]`` of ``"host:port,host:port"`` or a list of those."""
    if isinstance(endpoints, str):
        endpoints = endpoints.split(',')
    out = []
    for text in endpoints:
        text = text.strip()
        if not text:
            continue
        if '://' in text:
            text = text.split('://', 1)[1]
        host, _, port = text.rpartition(':')
        if not host or not port.isdigit():
            raise ValueError('an etcd endpoint is host:port, not %r' % text)
        out.append((host.strip('[]'), int(port)))
    if not out:
        raise ValueError('no etcd endpoint given')
    return out


class EtcdClient:
    """Unary calls to etcd's gRPC gateway over one keep-alive connection,
    moving to the next endpoint when one fails; watches on connections of
    their own."""

    def __init__(self, endpoints, timeout=2.0):
        self.endpoints = parse_endpoints(endpoints)
        self.timeout = timeout
        self.current = 0
        self._conn = None
        self._watches = set()        # connections of open watches
        self.calls = 0
        self.failovers = 0

    def endpoint(self):
        """``host:port`` of the endpoint in use."""
        host, port = self.endpoints[self.current]
        return '%s:%d' % (host, port)

    def _connection(self):
        if self._conn is None:
            host, port = self.endpoints[self.current]
            self._conn = http.client.HTTPConnection(host, port,
                                                    timeout=self.timeout)
        return self._conn

    def _rotate(self):
        self.close()
        self.current = (self.current + 1) % len(self.endpoints)
        self.failovers += 1

    def next_endpoint(self):
        """Use the next endpoint from now on (the one in use failed)."""
        self._rotate()

    def cancel_watches(self):
        """End every open watch of this client now (its reader gets
        EtcdUnavailable): a watch hung on a cut-off member would otherwise
        wait for its read timeout."""
        for conn in list(self._watches):
            sock = getattr(conn, 'sock', None)
            if sock is not None:
                try:
                    sock.shutdown(2)
                except OSError:
                    pass

    def close(self):
        """Close the connection in use."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, path, body):
        """POST ``body`` to ``/v3<path>``; the decoded answer.  Raises
        :class:`EtcdUnavailable` when no endpoint answers, EtcdError for a
        refusal (a bad request: trying elsewhere would not help)."""
        data = json.dumps(body).encode()
        last = None
        for _ in range(len(self.endpoints)):
            conn = self._connection()
            try:
                conn.request('POST', '/v3' + path, data,
                             {'Content-Type': 'application/json'})
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                last = '%s: %s' % (self.endpoint(), exc or type(exc).__name__)
                self._rotate()
                continue
            self.calls += 1
            if resp.status == 200:
                return json.loads(raw)
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {'error': raw[:200].decode(errors='replace')}
            message = answer.get('message') or answer.get('error')
            if resp.status >= 500 or answer.get('code') in (4, 14):
                # Timed out, no leader, shutting down: another member may do.
                last = '%s: %s' % (self.endpoint(), message)
                self._rotate()
                continue
            raise EtcdError('etcd refused %s: %s' % (path, message))
        raise EtcdUnavailable('etcd unreachable (%s)' % last)

    def health(self, timeout=1.0):
        """``{endpoint: True/False}``: each member's own ``/health``."""
        out = {}
        for host, port in self.endpoints:
            name = '%s:%d' % (host, port)
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.request('GET', '/health')
                resp = conn.getresponse()
                out[name] = resp.status == 200 and json.loads(
                    resp.read()).get('health') in ('true', True)
            except (OSError, http.client.HTTPException, ValueError):
                out[name] = False
            finally:
                conn.close()
        return out

    # -- the calls the product uses --

    def range(self, prefix):
        """``(kvs, revision)`` of every key under ``prefix`` (linearizable).
        Each kv: ``{key (str), value (bytes), mod_revision, create_revision,
        lease}``."""
        answer = self.call('/kv/range', {'key': b64(prefix),
                                         'range_end': b64(prefix_end(prefix))})
        return ([_kv(kv) for kv in answer.get('kvs', ())],
                int(answer['header']['revision']))

    def txn(self, compare, success, failure=()):
        """``(succeeded, revision, responses)`` of a transaction (the raw
        gateway structures; see :func:`put_op` and friends)."""
        answer = self.call('/kv/txn', {'compare': list(compare),
                                       'success': list(success),
                                       'failure': list(failure)})
        # proto3 leaves a false ``succeeded`` out of the JSON.
        return (bool(answer.get('succeeded')),
                int(answer['header']['revision']),
                answer.get('responses', []))

    def lease_grant(self, ttl):
        """``(lease id, granted ttl)``."""
        answer = self.call('/lease/grant', {'TTL': int(ttl)})
        return int(answer['ID']), int(answer['TTL'])

    def lease_keepalive(self, lease):
        """The lease's remaining TTL, or -1 when it is gone."""
        answer = self.call('/lease/keepalive', {'ID': lease})
        return int(answer.get('result', {}).get('TTL', -1))

    def lease_revoke(self, lease):
        """End a lease now (its keys go)."""
        self.call('/lease/revoke', {'ID': lease})

    def watch(self, prefix, start_revision, read_timeout=10.0):
        """Yield ``(events, progress)`` for every change under ``prefix``
        from ``start_revision`` on (``events``: ``[(type, kv)]``, type
        'PUT' or 'DELETE'); a progress notification gives ``([],
        revision)``: every change up to ``revision`` was delivered
        (``progress`` is 0 otherwise: a message with events does not vouch
        for the revisions after them).  Ends with
        :class:`EtcdCompacted`, or EtcdUnavailable when the stream breaks,
        stays silent for ``read_timeout`` (the members send progress
        notifications when told to: an idle watch is not a dead one), or
        the member loses its leader (``hasleader``: a member cut off from
        the others ends the stream instead of staying silent)."""
        host, port = self.endpoints[self.current]
        conn = http.client.HTTPConnection(host, port, timeout=read_timeout)
        body = {'create_request': {
            'key': b64(prefix), 'range_end': b64(prefix_end(prefix)),
            'start_revision': int(start_revision), 'progress_notify': True}}
        self._watches.add(conn)
        try:
            try:
                conn.request('POST', '/v3/watch', json.dumps(body).encode(),
                             {'Content-Type': 'application/json',
                              'Grpc-Metadata-hasleader': 'true'})
                resp = conn.getresponse()
                if resp.status != 200:
                    raise EtcdUnavailable('watch refused: %d %s' % (
                        resp.status, resp.read()[:200]))
                while True:
                    line = resp.readline()
                    if not line:
                        raise EtcdUnavailable('watch stream ended')
                    line = line.strip()
                    if not line:
                        continue
                    msg = json.loads(line)
                    result = msg.get('result')
                    if result is None:
                        raise EtcdUnavailable('watch error: %s' % (
                            msg.get('error'),))
                    if result.get('compact_revision') and \
                            int(result['compact_revision']) > 0:
                        raise EtcdCompacted(int(result['compact_revision']))
                    if result.get('canceled'):
                        raise EtcdUnavailable('watch cancelled: %s' % (
                            result.get('cancel_reason'),))
                    if result.get('created'):
                        continue
                    events = [(ev.get('type', 'PUT'), _kv(ev['kv']))
                              for ev in result.get('events', ())]
                    progress = 0 if events else int(result.get(
                        'header', {}).get('revision', 0))
                    yield events, progress
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise EtcdUnavailable('watch on %s:%d failed: %s' % (
                    host, port, exc or type(exc).__name__)) from None
        finally:
            self._watches.discard(conn)
            conn.close()


def _kv(kv):
    return {'key': unb64(kv['key']).decode(),
            'value': unb64(kv.get('value')),
            'mod_revision': int(kv.get('mod_revision', 0)),
            'create_revision': int(kv.get('create_revision', 0)),
            'lease': int(kv.get('lease', 0))}


def put_op(key, value, lease=0):
    """A txn operation: put ``value`` (bytes or str) at ``key``."""
    req = {'key': b64(key), 'value': b64(value)}
    if lease:
        req['lease'] = lease
    return {'request_put': req}


def delete_op(key):
    """A txn operation: delete ``key``."""
    return {'request_delete_range': {'key': b64(key)}}


def range_op(key):
    """A txn operation: read ``key``."""
    return {'request_range': {'key': b64(key)}}


def compare_mod(key, revision):
    """Compare: ``key`` was last changed at ``revision`` (0: absent)."""
    return {'key': b64(key), 'target': 'MOD', 'result': 'EQUAL',
            'mod_revision': int(revision)}


def compare_absent(key):
    """Compare: ``key`` does not exist."""
    return {'key': b64(key), 'target': 'CREATE', 'result': 'EQUAL',
            'create_revision': 0}


def compare_lease(key, lease):
    """Compare: ``key`` hangs on ``lease``."""
    return {'key': b64(key), 'target': 'LEASE', 'result': 'EQUAL',
            'lease': lease}


def compare_value(key, value):
    """Compare: ``key`` holds ``value``."""
    return {'key': b64(key), 'target': 'VALUE', 'result': 'EQUAL',
            'value': b64(value)}


# --- the store --------------------------------------------------------------------

class EtcdStore(Store):
    """Records in etcd (see the module doc).  ``client`` is an
    :class:`EtcdClient`; ``guard`` is ``(instance key, lease)`` while the
    instance holds a lease (set by the cluster), None otherwise: then
    nothing can be written."""

    group_commit = True

    def __init__(self, client, prefix=DEFAULT_PREFIX, max_txn_ops=128,
                 instance=None, private_kinds=()):
        self.client = client
        self.prefix = prefix
        # Records of these kinds are the instance's own, not the shared
        # database's (the authority's event sequence number: each instance
        # numbers its own events); each instance keeps its copy under its
        # own key, so that their concurrent commits never conflict.
        self.instance = instance
        self.private_kinds = frozenset(private_kinds)
        if self.private_kinds and not instance:
            raise ValueError('private record kinds need an instance name')
        self.max_keys = max(1, int(max_txn_ops) - 1)  # one compare: the lease
        self.guard = None
        self.revision = 0            # the newest revision this copy holds
        self.watched = 0             # the watch has delivered up to here
        # (kind, key) -> (mod revision, packed value): what etcd holds, as
        # far as this instance knows.  Deleted records leave their revision
        # in _gone until the watch has passed it.
        self._state = {}
        self._gone = {}
        self._pending = []           # commits since the last sync
        self._commits = 0
        self._txns = 0
        self._refused = 0
        self._conflicts = 0
        self.last_txn_ms = 0.0
        self.observe_txn = None      # called with each transaction's time
        self.load_report = {'warnings': []}

    # -- record keys --

    def _key_of(self, sk):
        """The etcd key of record ``sk`` (a private one under the
        instance's name)."""
        kind, key = sk
        if kind in self.private_kinds:
            key = (self.instance, key)
        return record_key(self.prefix, kind, key)

    def _record_of(self, text):
        """``(kind, key)`` of etcd key ``text``, or None for another
        instance's private record."""
        kind, key = parse_record_key(self.prefix, text)
        if kind in self.private_kinds:
            if not (isinstance(key, tuple) and len(key) == 2
                    and key[0] == self.instance):
                return None
            key = key[1]
        return kind, key

    # -- loading and the live copy --

    def load(self, check=None):
        """Every record in etcd now; the revision read is kept, and the
        watch starts after it.  ``check`` refuses a record the database
        could not hold (StoreError names it)."""
        kvs, revision = self.client.range(self.prefix + RECORDS)
        return self._take(kvs, revision, check, strict=True)

    def _take(self, kvs, revision, check, strict):
        start = self.prefix + RECORDS
        self._state, self._gone = {}, {}
        out = {}
        for kv in kvs:
            if not kv['key'].startswith(start):
                continue
            try:
                sk = self._record_of(kv['key'])
                if sk is None:
                    continue
                kind, key = sk
                value = unpack_value(kv['value'])
                if check is not None:
                    check(kind, key, value)
            except Exception as exc:  # noqa: BLE001 - said plainly
                message = 'etcd key %s holds a bad record: %s' % (
                    kv['key'], exc)
                if strict:
                    raise StoreError(message) from None
                LOG.error('%s; left out', message)
                continue
            self._state[(kind, key)] = (kv['mod_revision'], kv['value'])
            out[(kind, key)] = value
        self.revision = self.watched = revision
        return out

    def reload(self, check=None):
        """Read everything again (after a compaction, or a lease loss):
        ``{(kind, key): value or None}`` of what differs from this copy."""
        kvs, revision = self.client.range(self.prefix + RECORDS)
        return self.reload_from(kvs, revision, check)

    def reload_from(self, kvs, revision, check=None):
        """The same, from a range read elsewhere (``kvs`` of the whole
        prefix at ``revision``; keys not under ``rec/`` are skipped): a
        record the database could not hold is left out and logged."""
        old = self._state
        records = self._take(kvs, revision, check, strict=False)
        changes = {}
        for sk, value in records.items():
            was = old.get(sk)
            if was is None or was[1] != self._state[sk][1]:
                changes[sk] = value
        for sk in old:
            if sk not in records:
                changes[sk] = None
        return changes

    def observe(self, events, revision=0):
        """Watched events (``[(type, kv)]``) -> ``{(kind, key): value or
        None}`` of the record changes this copy did not hold yet, in order;
        events of other keys are ignored (the cluster's).  ``revision``:
        the watch is at least there."""
        changes = {}
        start = self.prefix + RECORDS
        for typ, kv in events:
            if not kv['key'].startswith(start):
                continue
            try:
                sk = self._record_of(kv['key'])
                if sk is None:
                    continue
                value = None if typ == 'DELETE' else unpack_value(
                    kv['value'])
            except Exception as exc:  # noqa: BLE001 - a bad key or value
                LOG.error('etcd key %s: not a record (%s); left out',
                          kv['key'], exc)
                continue
            rev = kv['mod_revision']
            known = self._state.get(sk)
            if max(known[0] if known else 0, self._gone.get(sk, 0)) >= rev:
                continue            # ours, or older than what we hold
            if typ == 'DELETE':
                self._state.pop(sk, None)
                self._gone[sk] = rev
                changes[sk] = None
            else:
                self._state[sk] = (rev, kv['value'])
                self._gone.pop(sk, None)
                changes[sk] = value
            self.watched = max(self.watched, rev)
        self.watched = max(self.watched, revision)
        self.revision = max(self.revision, self.watched)
        if self._gone:
            # Nothing older than the watch's position can come any more
            # (our own writes do not move it: the watch may lag them).
            self._gone = {sk: rev for sk, rev in self._gone.items()
                          if rev > self.watched}
        return changes

    def value(self, kind, key):
        """The value this copy holds for a record, or None."""
        known = self._state.get((kind, key))
        return unpack_value(known[1]) if known else None

    # -- writing --

    def commit(self, changes):
        """Buffer ``changes`` until :meth:`sync`; each remembers the
        revision of the record it was computed from."""
        if not changes:
            return
        out = []
        for kind, key, value in changes:
            if value is not None and not isinstance(value, dict):
                raise TypeError('record value must be a dict or None')
            sk = (kind, key)
            known = self._state.get(sk)
            packed = None if value is None else pack_value(value)
            out.append((sk, packed, known[0] if known else 0))
        self._pending.append(out)
        self._commits += 1

    @property
    def pending(self):
        """Commits not yet synced."""
        return len(self._pending)

    def sync(self, offload=True):
        """Send every buffered commit; return once etcd committed them, or
        raise :class:`StoreRefused` (nothing after the refused
        transaction was sent: its records, and those of the commits after
        it, are in the exception)."""
        pending, self._pending = self._pending, []
        batches = self._batches(pending)
        for i, batch in enumerate(batches):
            try:
                self._send(batch)
            except StoreRefused as refused:
                for later in batches[i + 1:]:
                    for sk in later:
                        refused.records.setdefault(sk, self.value(*sk))
                raise

    def _batches(self, pending):
        """Merge the commits per key (the last value, the first base
        revision) into transactions of at most ``max_keys`` keys; a commit
        is split only when it alone is larger.  A key an earlier
        transaction of the same sync writes is based on that write (base
        None: what this copy holds when it is sent)."""
        batches, cur, sent = [], {}, set()

        def close():
            sent.update(cur)
            batches.append(dict(cur))
            cur.clear()
        for commit in pending:
            keys = {sk for sk, _, _ in commit}
            if cur and len(set(cur) | keys) > self.max_keys:
                close()
            for sk, packed, base in commit:
                if sk in cur:
                    cur[sk] = (packed, cur[sk][1])
                else:
                    if len(cur) >= self.max_keys:
                        close()
                    cur[sk] = (packed, None if sk in sent else base)
        if cur:
            close()
        return batches

    def _send(self, batch):
        guard = self.guard
        if guard is None:
            self._refused += 1
            raise StoreRefused('this instance holds no etcd lease',
                               {sk: self.value(*sk) for sk in batch})
        inst_key, lease = guard
        keys = {sk: self._key_of(sk) for sk in batch}
        compare = [compare_lease(inst_key, lease)]
        success, failure = [], []
        for sk, (packed, base) in list(batch.items()):
            if base is None:
                base = self._state.get(sk, (0,))[0]
                batch[sk] = (packed, base)
            compare.append(compare_mod(keys[sk], base))
            success.append(delete_op(keys[sk]) if packed is None
                           else put_op(keys[sk], packed))
            failure.append(range_op(keys[sk]))
        started = time.perf_counter()
        try:
            ok, revision, responses = self.client.txn(compare, success,
                                                      failure)
        except EtcdError as exc:
            # Maybe applied, maybe not: what we knew; the watch corrects it.
            self._refused += 1
            raise StoreRefused(str(exc), {sk: self.value(*sk)
                                          for sk in batch}) from None
        finally:
            self._timed(time.perf_counter() - started)
        self._txns += 1
        if ok:
            for sk, (packed, _) in batch.items():
                if packed is None:
                    self._state.pop(sk, None)
                    self._gone[sk] = revision
                else:
                    self._state[sk] = (revision, packed)
            self.revision = max(self.revision, revision)
            return
        # Refused: the failure branch read every key at ``revision``.
        now = {}
        for sk, resp in zip(batch, responses):
            kvs = resp.get('response_range', {}).get('kvs', ())
            if kvs:
                kv = _kv(kvs[0])
                self._state[sk] = (kv['mod_revision'], kv['value'])
                self._gone.pop(sk, None)
                now[sk] = unpack_value(kv['value'])
            else:
                self._state.pop(sk, None)
                self._gone[sk] = max(self._gone.get(sk, 0), revision)
                now[sk] = None
        conflict = any(self._state.get(sk, (0,))[0] != base
                       for sk, (_, base) in batch.items())
        self._refused += 1
        if conflict:
            self._conflicts += 1
            raise StoreRefused('another instance changed the same records '
                               'first', now, conflict=True)
        raise StoreRefused('this instance\'s etcd lease is gone', now)

    def _timed(self, seconds):
        self.last_txn_ms = seconds * 1000.0
        if self.observe_txn is not None:
            self.observe_txn(seconds)

    def close(self):
        """Close the client's connection."""
        self.client.close()

    def stats(self):
        """Figures for metrics."""
        return {'records': len(self._state), 'journal_bytes': 0,
                'snapshot_bytes': 0, 'last_fsync_ms': 0.0,
                'commits': self._commits, 'etcd_txns': self._txns,
                'etcd_refused': self._refused,
                'etcd_conflicts': self._conflicts,
                'etcd_revision': self.revision,
                'last_txn_ms': round(self.last_txn_ms, 3)}


# --- the cluster's keys -------------------------------------------------------

class EtcdCluster:
    """The writes of the cluster's mastership (southbound/cluster.py
    decides them): the instance's lease and key, its OpenFlow connections,
    claims and releases of NVEs and of the leadership."""

    def __init__(self, client, prefix, name):
        self.client = client
        self.prefix = prefix
        self.name = name
        self.inst_key = prefix + 'inst/' + name

    def conn_key(self, dpid):
        """The key saying this instance reaches NVE ``dpid``."""
        return '%sconn/%016x/%s' % (self.prefix, dpid, self.name)

    def owner_key(self, dpid):
        """NVE ``dpid``'s owner key."""
        return '%sowner/%016x' % (self.prefix, dpid)

    def register(self, ttl, info):
        """A new lease and this instance's key on it: ``(lease, ttl, time
        the grant was asked)`` (monotonic; the local fence counts from
        then)."""
        asked = time.monotonic()
        lease, granted = self.client.lease_grant(ttl)
        ok, _, _ = self.client.txn(
            [], [put_op(self.inst_key, json.dumps(info), lease)])
        if not ok:
            raise EtcdError('could not register %s' % self.inst_key)
        return lease, granted, asked

    def keepalive(self, lease):
        """``(ttl or -1, time asked)``."""
        asked = time.monotonic()
        return self.client.lease_keepalive(lease), asked

    def set_conn(self, lease, dpid, connected):
        """Say (or unsay) that this instance reaches NVE ``dpid``."""
        key = self.conn_key(dpid)
        if connected:
            op = put_op(key, '', lease)
        else:
            op = delete_op(key)
        self.client.txn([compare_lease(self.inst_key, lease)], [op])

    def claim(self, lease, dpid):
        """Become NVE ``dpid``'s master if it has none: the generation (the
        owner key's create revision), or None."""
        key = self.owner_key(dpid)
        ok, revision, _ = self.client.txn(
            [compare_absent(key), compare_lease(self.inst_key, lease)],
            [put_op(key, self.name, lease)])
        return revision if ok else None

    def release(self, lease, dpid):
        """Give NVE ``dpid`` up (only if it is ours)."""
        key = self.owner_key(dpid)
        ok, _, _ = self.client.txn(
            [compare_value(key, self.name), compare_lease(key, lease)],
            [delete_op(key)])
        return ok

    def lead(self, lease):
        """Become the leader if there is none: True when we are."""
        key = self.prefix + 'leader'
        ok, _, _ = self.client.txn(
            [compare_absent(key), compare_lease(self.inst_key, lease)],
            [put_op(key, self.name, lease)])
        return ok

    def resign(self, lease):
        """Revoke the lease: every key on it goes at once (a clean stop
        hands the NVEs over without waiting for the lease to expire)."""
        self.client.lease_revoke(lease)

    def load(self):
        """``(kvs, revision)`` of the whole prefix."""
        return self.client.range(self.prefix)
