"""Tenant-system registration over msgpack-RPC (docs/contracts.md, registration, draft 6.1).

A hypervisor agent connects over TCP (default port 6699) and sends
msgpack-RPC requests as :mod:`os_ken.lib.rpc` speaks them::

    [0, msgid, "associate", [{"nve": "000000000000000a", "port": "tap1",
                              "mac": "02:00:00:00:00:01", "vnid": 5001,
                              "ip": "192.168.1.5", "bid": 1}]]

Methods: ``login`` (name, secret), ``associate`` (nve, port, mac, vnid;
optional ip, vlan, bid), ``dissociate`` (nve, mac; optional bid) and
``query`` (vnid, mac).  The one parameter is a map of named fields; the
result is a map.  The decisions are in authority/bids.py; every change is
a command (``Associate``, ``Dissociate``) executed by ``ctl.execute``, so
it is persisted and its flows recomputed before the reply leaves.

Who may (docs/contracts.md, authentication): with an auth file
(northbound/auth.py) a connection first logs in as a hypervisor; until
then every other call is refused (``unauthorized``), and afterwards any
call that names an ``nve`` other than ``query`` must name one of the
hypervisor's own NVEs (``forbidden``).  Three failed logins close the
connection.  The hypervisor's name is the ``actor`` of its commands
(``rpc`` without an auth file, where ``login`` is accepted as is).

A registration that would take a tenant system (or its address) from a
live location is verified by the authority first (authority/mobility.py,
law 4): the reply waits for the verdict, at most ``move_probe_timeout``
and a little (``ctl.wait_verdict``), then is the registration's answer, or
its refusal (``conflict``: the old location answered), or, if the verdict
is still out, ``{"action": "pending", "verification": id, ...}``: ``query``
tells later what became of it.

A refused request gets an RPC error, a map ``{"code", "message", "field"}``
(code ``bad-request``, ``not-found``, ``conflict`` or ``internal-error``),
and the database is unchanged.  Bytes that are not msgpack-RPC requests
(garbage, a response or an oversized message) close that connection and
count ``rpc_bad_messages``; the server and the other clients go on.
Requests are counted as ``rpc_requests_<method>_<outcome>`` in the app's
counters.
"""

import logging
import socket
import time

import msgpack
from os_ken.lib import rpc

from ..authority import commands as C
from ..authority.errors import BadRequest, MappingError
from ..runtime import listener
from .auth import Forbidden, Unauthorized

LOG = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024     # bytes of one request; more closes the socket
_MSGID_MAX = 0xFFFFFFFF
MAX_FAILED_LOGINS = 3       # per connection; then it is closed
ANONYMOUS = 'rpc'           # the actor without an auth file

# method -> (required fields, optional fields); field -> accepted types
FIELDS = {
    'login': (('name', 'secret'), ()),
    'associate': (('nve', 'port', 'mac', 'vnid'), ('ip', 'vlan', 'bid')),
    'dissociate': (('nve', 'mac'), ('bid',)),
    'query': (('vnid', 'mac'), ()),
}
_TYPES = {'nve': (str, int), 'port': (str,), 'mac': (str,), 'vnid': (int,),
          'ip': (str,), 'vlan': (int,), 'bid': (int,), 'name': (str,),
          'secret': (str,)}
# Methods any hypervisor may call on any NVE (reads).
UNSCOPED = frozenset(('query',))
_TYPE_NAMES = {str: 'a string', int: 'an integer'}


class BadMessage(Exception):
    """Bytes that are not a msgpack-RPC message we can answer."""


class _Encoder(rpc.MessageEncoder):
    """os-ken's encoder with a bounded buffer and strict framing: anything
    but a well-formed request or notification raises :class:`BadMessage`
    (os-ken would ignore it, or fail on it half-way)."""

    def __init__(self, max_message=MAX_MESSAGE):
        super().__init__()
        self._unpacker = msgpack.Unpacker(strict_map_key=False,
                                          max_buffer_size=max_message)
        self._fed = 0

    @property
    def partial(self):
        """Bytes of a message not complete yet are buffered."""
        return self._fed > self._unpacker.tell()

    def get_and_dispatch_messages(self, data, disp_table):
        self._fed += len(data)
        try:
            super().get_and_dispatch_messages(data, disp_table)
        except BadMessage:
            raise
        except Exception as exc:   # msgpack's errors, BufferFull, ...
            raise BadMessage('not msgpack: %s' % (exc,)) from None

    @staticmethod
    def _dispatch_message(m, disp_table):
        if not isinstance(m, (list, tuple)) or not m \
                or type(m[0]) is not int:   # noqa: E721 (no bools)
            raise BadMessage('not a msgpack-RPC message: %r' % (m,))
        kind = m[0]
        if kind == rpc.MessageType.REQUEST:
            if len(m) != 4 or type(m[1]) is not int \
                    or not 0 <= m[1] <= _MSGID_MAX:
                raise BadMessage('a request is [0, msgid, method, params]: '
                                 '%r' % (m,))
        elif kind == rpc.MessageType.NOTIFY:
            if len(m) != 3:
                raise BadMessage('a notification is [2, method, params]: %r'
                                 % (m,))
        else:
            raise BadMessage('a client sends requests only, not %r' % (m,))
        disp_table[kind](m[1:])


class _Phase:
    """What one connection is doing, for the listener's bounds, and who
    logged in on it."""

    __slots__ = ('phase', 'since', 'hypervisor', 'failed_logins')

    def __init__(self, now):
        self.phase, self.since = listener.IDLE, now
        self.hypervisor = None       # auth.Hypervisor once logged in
        self.failed_logins = 0

    def set(self, phase, now):
        """Enter ``phase`` at ``now`` (unchanged if already in it)."""
        if phase != self.phase:
            self.phase, self.since = phase, now


class RegistrationServer:
    """The msgpack-RPC service of one app (``ctl``: the NVO3App, or any
    object with ``execute(command)``, ``views`` and ``counters``).

    Connections are accepted by a runtime/listener.py Listener (it
    survives running out of descriptors, keeps at most
    ``max_connections``); one that stays silent ``idle_timeout`` seconds
    between requests, or takes longer than ``request_timeout`` to send
    one, is closed.  Each connection is read here, not by os-ken's
    ``rpc.EndPoint``: an EndPoint refers to itself (its dispatch table
    holds its own bound methods), so every closed connection stayed in
    memory until the hourly full collection (gcpolicy.py).

    ``auth``: northbound/auth.py's Auth (None: nothing checked; it may be
    replaced while serving); ``tls``: an SSL context to serve with."""

    def __init__(self, ctl, max_message=MAX_MESSAGE, max_connections=1024,
                 idle_timeout=300.0, request_timeout=10.0, log=None,
                 auth=None, tls=None):
        self.ctl = ctl
        self.auth = auth
        self.tls = tls
        self.max_message = max_message
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.log = log
        self.server = None
        self.connections = 0

    @property
    def counters(self):
        """The app's counters (``rpc_*`` are counted here)."""
        return self.ctl.counters

    def listen(self, host, port):
        """Bind the listening socket; returns the (host, port) bound."""
        sock = listener.listen(host, port)
        self.server = listener.Listener(
            sock, 'rpc', self._connection, self._phase,
            self.max_connections,
            timeouts={listener.IDLE: self.idle_timeout,
                      listener.READING: self.request_timeout},
            evict=(listener.IDLE,), counters=self.counters, log=self.log,
            tls=self.tls, tls_timeout=self.request_timeout)
        return sock.getsockname()[:2]

    def serve(self, host, port):
        """Listen and serve forever (run it in a hub greenlet)."""
        if self.server is None:
            self.listen(host, port)
        LOG.info('registration RPC listening on %s:%d',
                 *self.server.sock.getsockname()[:2])
        self.server.serve_forever()

    # -- one connection --

    @staticmethod
    def _phase(conn):
        state = conn.data
        if state is None:
            return listener.IDLE, conn.accepted
        return state.phase, state.since

    def _connection(self, conn):
        sock, addr = conn.sock, conn.addr
        self.connections += 1
        state = conn.data = _Phase(time.monotonic())
        encoder = _Encoder(self.max_message)
        requests, notifications = [], []
        table = {rpc.MessageType.REQUEST: requests.append,
                 rpc.MessageType.NOTIFY: notifications.append}
        try:
            while True:
                data = self._receive(sock, encoder, state, addr)
                if not data:
                    return      # closed by the peer, timed out, error
                bad = None
                try:
                    encoder.get_and_dispatch_messages(data, table)
                except BadMessage as exc:
                    bad = exc
                if requests:
                    state.set(listener.BUSY, time.monotonic())
                # Requests that came before garbage get answers.
                for request in requests:
                    if not self._answer(sock, encoder, request, state):
                        return
                    if state.failed_logins >= MAX_FAILED_LOGINS:
                        self._warn('registration RPC from %s: %d failed '
                                   'logins; closing', addr,
                                   state.failed_logins)
                        return
                requests.clear()
                self.counters['rpc_notifications_ignored'] += len(
                    notifications)
                notifications.clear()
                if bad is not None:
                    self.counters['rpc_bad_messages'] += 1
                    self._warn('registration RPC from %s: %s; closing',
                               addr, bad)
                    return
        finally:
            self.connections -= 1

    def _receive(self, sock, encoder, state, addr):
        """The next bytes, within the idle or the request deadline; b''
        when the connection is over."""
        now = time.monotonic()
        if encoder.partial:
            state.set(listener.READING, now)
            limit = self.request_timeout
            left = state.since + limit - now if limit else None
        else:
            state.set(listener.IDLE, now)
            left = self.idle_timeout or None
        if left is not None and left <= 0:
            return self._timed_out(addr, state)
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return self._timed_out(addr, state)
        except OSError:
            return b''
        if data and state.phase == listener.IDLE:
            state.set(listener.READING, time.monotonic())
        return data

    def _timed_out(self, addr, state):
        self.counters['rpc_timeouts'] += 1
        self._warn('registration RPC from %s: %s for too long; closing',
                   addr, 'silent' if state.phase == listener.IDLE
                   else 'sending a request')
        return b''

    def _warn(self, msg, *args):
        if self.log is not None:
            self.log.warning(msg, *args)
        else:
            LOG.warning(msg, *args)

    def _answer(self, sock, encoder, request, session=None):
        msgid, method, params = request
        error, result = self.handle(method, params, session)
        try:
            reply = encoder.create_response(msgid, error=error, result=result)
        except (TypeError, ValueError) as exc:   # unpackable result: a bug
            LOG.exception('cannot encode the reply to %s', method)
            reply = encoder.create_response(msgid, error=_error(
                'internal-error', 'cannot encode the reply: %s' % exc))
        sock.settimeout(self.request_timeout or None)
        try:
            sock.sendall(reply)
        except OSError:              # gone, or not reading its replies
            return False
        return True

    # -- requests --

    def handle(self, method, params, session=None):
        """Answer one request of the connection whose state is
        ``session`` (who logged in on it): returns ``(error, result)``."""
        if isinstance(method, bytes):
            method = method.decode('utf-8', 'replace')
        name = method if isinstance(method, str) and method in FIELDS \
            else 'unknown'
        try:
            if name == 'unknown':
                raise BadRequest(
                    'unknown method %r; methods: %s' % (
                        method, ', '.join(sorted(FIELDS))), 'method')
            fields = self._fields(method, params)
            if method == 'login':
                result = self._login(session, **fields)
            else:
                actor = self._authorize(method, fields, session)
                result = getattr(self, '_' + method)(actor=actor, **fields)
        except MappingError as exc:
            outcome = exc.code.replace('-', '_')
            self.counters['rpc_requests_%s_%s' % (name, outcome)] += 1
            return _error(exc.code, exc.message, exc.field), None
        except Exception:   # pylint: disable=broad-except
            LOG.exception('registration RPC %s failed', name)
            self.counters['rpc_requests_%s_error' % name] += 1
            return _error('internal-error',
                          'the authority failed on this request; see its '
                          'log'), None
        self.counters['rpc_requests_%s_ok' % name] += 1
        return None, _plain(result)

    @staticmethod
    def _fields(method, params):
        required, optional = FIELDS[method]
        if not isinstance(params, (list, tuple)) or len(params) != 1 \
                or not isinstance(params[0], dict):
            raise BadRequest(
                '%s takes one parameter, a map of named fields (%s), not %r'
                % (method, ', '.join(required + optional),
                   _short(params)), 'params')
        given = params[0]
        unknown = [k for k in given if k not in required + optional]
        if unknown:
            raise BadRequest('%s: unknown field(s) %s' % (
                method, ', '.join(sorted(map(repr, unknown)))),
                str(sorted(map(str, unknown))[0]))
        fields = {}
        for name in required + optional:
            value = given.get(name)
            if value is None:
                if name in required:
                    raise BadRequest('%s: missing field %r' % (
                        method, name), name)
                continue
            types = _TYPES[name]
            if not isinstance(value, types) or isinstance(value, bool):
                raise BadRequest('%s: %s must be %s, not %r' % (
                    method, name, ' or '.join(_TYPE_NAMES[t] for t in types),
                    _short(value)), name)
            fields[name] = value
        return fields

    # -- who may --

    def _login(self, session, name, secret):
        auth = self.auth
        if auth is None:
            return {'name': name, 'nves': None, 'authentication': False}
        hypervisor = auth.login(name, secret)
        if hypervisor is None:
            if session is not None:
                session.failed_logins += 1
            self.counters['rpc_logins_failed'] += 1
            raise Unauthorized('login refused: no hypervisor %r with that '
                               'secret' % name[:64], 'secret')
        if session is not None:
            session.hypervisor = hypervisor
        self.counters['rpc_logins_ok'] += 1
        return {'name': hypervisor.name, 'authentication': True,
                'nves': ['%016x' % d for d in sorted(hypervisor.nves)]}

    def _authorize(self, method, fields, session):
        """The actor of a call, once it is allowed (module docstring)."""
        if self.auth is None:
            return ANONYMOUS
        hypervisor = session.hypervisor if session is not None else None
        if hypervisor is None:
            raise Unauthorized('log in first: login({"name", "secret"})',
                               'method')
        if method not in UNSCOPED and 'nve' in fields:
            try:
                hypervisor.check_nve(fields['nve'])
            except Forbidden:
                self.counters['rpc_forbidden'] += 1
                raise
        return hypervisor.name

    # -- the methods --

    def _associate(self, nve, port, mac, vnid, ip=None, vlan=None, bid=None,
                   actor=None):
        done = self.ctl.execute(C.Associate(nve, port, mac, vnid, ip=ip,
                                            vlan=vlan, bid=bid, actor=actor))
        if done.get('action') == 'pending':
            verdict = self.ctl.wait_verdict(done['verification'])
            if verdict is None:
                return dict(done, message=(
                    'the registration takes over a live location that is '
                    'being probed; query later to see what became of it'))
            done, error = verdict
            if error is not None:
                raise error
        view = self.ctl.views.registration(done['vnid'], done['mac'])
        return dict(view, action=done['action'], binding={
            k: done[k] for k in ('mac', 'vnid', 'service', 'nve', 'port',
                                 'vlan', 'ip', 'bid')})

    def _dissociate(self, nve, mac, bid=None, actor=None):
        return self.ctl.execute(C.Dissociate(nve, mac, bid=bid, actor=actor))

    def _query(self, vnid, mac, actor=None):
        return self.ctl.views.registration(vnid, mac)


def _error(code, message, field_name=None):
    return {'code': code, 'message': message, 'field': field_name}


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


def _plain(value):
    """Only what msgpack carries: maps, lists, strings, numbers, None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    return str(value)


__all__ = ['RegistrationServer', 'BadMessage', 'FIELDS', 'MAX_MESSAGE']
