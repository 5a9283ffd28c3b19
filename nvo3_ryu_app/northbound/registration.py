"""Tenant-system registration over msgpack-RPC (contract 3, draft 6.1).

A hypervisor agent connects over TCP (default port 6699) and sends
msgpack-RPC requests as :mod:`os_ken.lib.rpc` speaks them::

    [0, msgid, "associate", [{"nve": "000000000000000a", "port": "tap1",
                              "mac": "02:00:00:00:00:01", "vnid": 5001,
                              "ip": "192.168.1.5", "bid": 1}]]

Methods: ``associate`` (nve, port, mac, vnid; optional ip, vlan, bid),
``dissociate`` (nve, mac; optional bid) and ``query`` (vnid, mac).  The one
parameter is a map of named fields; the result is a map.  The decisions are
in authority/bids.py; every change is a command (``Associate``,
``Dissociate``) executed by ``ctl.execute``, so it is persisted and its
flows recomputed before the reply leaves.

A refused request gets an RPC error, a map ``{"code", "message", "field"}``
(code ``bad-request``, ``not-found``, ``conflict`` or ``internal-error``),
and the database is unchanged.  Bytes that are not msgpack-RPC requests
(garbage, a response or an oversized message) close that connection and
count ``rpc_bad_messages``; the server and the other clients go on.
Requests are counted as ``rpc_requests_<method>_<outcome>`` in the app's
counters.
"""

import logging

import msgpack
from os_ken.lib import hub
from os_ken.lib import rpc

from ..authority import commands as C
from ..authority.errors import BadRequest, MappingError

LOG = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024     # bytes of one request; more closes the socket
_MSGID_MAX = 0xFFFFFFFF

# method -> (required fields, optional fields); field -> accepted types
FIELDS = {
    'associate': (('nve', 'port', 'mac', 'vnid'), ('ip', 'vlan', 'bid')),
    'dissociate': (('nve', 'mac'), ('bid',)),
    'query': (('vnid', 'mac'), ()),
}
_TYPES = {'nve': (str, int), 'port': (str,), 'mac': (str,), 'vnid': (int,),
          'ip': (str,), 'vlan': (int,), 'bid': (int,)}
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

    def get_and_dispatch_messages(self, data, disp_table):
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


class RegistrationServer:
    """The msgpack-RPC service of one app (``ctl``: the NVO3App, or any
    object with ``execute(command)``, ``views`` and ``counters``)."""

    def __init__(self, ctl, max_message=MAX_MESSAGE):
        self.ctl = ctl
        self.max_message = max_message
        self.server = None
        self.connections = 0

    @property
    def counters(self):
        """The app's counters (``rpc_*`` are counted here)."""
        return self.ctl.counters

    def listen(self, host, port):
        """Bind the listening socket; returns the (host, port) bound."""
        self.server = hub.StreamServer((host, port), self._connection)
        return self.server.server.getsockname()[:2]

    def serve(self, host, port):
        """Listen and serve forever (run it in a hub greenlet)."""
        if self.server is None:
            self.listen(host, port)
        LOG.info('registration RPC listening on %s:%d',
                 *self.server.server.getsockname()[:2])
        self.server.serve_forever()

    # -- one connection --

    def _connection(self, sock, addr):
        self.counters['rpc_connections'] += 1
        self.connections += 1
        encoder = _Encoder(self.max_message)
        endpoint = rpc.EndPoint(sock, encoder)
        try:
            while True:
                try:
                    more = endpoint.receive_messages()
                except BadMessage as exc:
                    # Requests that came before the garbage get answers.
                    self.counters['rpc_bad_messages'] += 1
                    LOG.warning('registration RPC from %s: %s; closing',
                                addr, exc)
                    more = False
                while True:
                    request = endpoint.get_request()
                    if request is None:
                        break
                    if not self._answer(sock, encoder, request):
                        return
                while endpoint.get_notification() is not None:
                    self.counters['rpc_notifications_ignored'] += 1
                if not more:
                    return      # closed by the peer, garbage, socket error
        finally:
            self.connections -= 1
            try:
                sock.close()
            except OSError:
                pass

    def _answer(self, sock, encoder, request):
        msgid, method, params = request
        error, result = self.handle(method, params)
        try:
            reply = encoder.create_response(msgid, error=error, result=result)
        except (TypeError, ValueError) as exc:   # unpackable result: a bug
            LOG.exception('cannot encode the reply to %s', method)
            reply = encoder.create_response(msgid, error=_error(
                'internal-error', 'cannot encode the reply: %s' % exc))
        try:
            sock.sendall(reply)
        except OSError:
            return False
        return True

    # -- requests --

    def handle(self, method, params):
        """Answer one request: returns ``(error, result)``."""
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
            result = getattr(self, '_' + method)(**fields)
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

    def _associate(self, nve, port, mac, vnid, ip=None, vlan=None, bid=None):
        done = self.ctl.execute(C.Associate(nve, port, mac, vnid, ip=ip,
                                            vlan=vlan, bid=bid))
        view = self.ctl.views.registration(done['vnid'], done['mac'])
        return dict(view, action=done['action'], binding={
            k: done[k] for k in ('mac', 'vnid', 'service', 'nve', 'port',
                                 'vlan', 'ip', 'bid')})

    def _dissociate(self, nve, mac, bid=None):
        return self.ctl.execute(C.Dissociate(nve, mac, bid=bid))

    def _query(self, vnid, mac):
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
