"""REST API v1 (DESIGN.md, contract 2) on WebOb, served by the app's hub.

No framework: a route table of (method, path template, handler) that the
OpenAPI document (openapi.json) must match exactly; a test walks both.
Handlers stay thin -- parse and validate, call, render -- because every
decision lives in the authority and the mapping database.

Why validation happens twice: this module checks the *shape* of a request
(a JSON object, no unknown field, the right JSON types, path and query
syntax) before anything is called, so a wrong request is answered with the
field it got wrong; the database then checks the *values* (ranges, existence,
conflicts) before it mutates anything.  Every write goes through
``ctl.change()``, which commits (persists, plans flows) only what the
database accepted, so a request that fails changes nothing.

Errors are ``{"error": {"code", "message", "field"}}`` with 400/404/405/409/
413; anything else is a bug: it is logged with its traceback and answered
500, and the tests (including OpenAPI-driven fuzzing) prove no input gets
there.

Long-polling (``GET /v1/events?since=&wait=``) and server-sent events
(``GET /v1/events/stream``) wait on a :class:`HubNotifier` woken by an
EventLog listener: under osken-manager that is an ``os_ken.lib.hub.Event``,
so a waiting request parks its own green thread and never the event loop.
"""

import json
import logging
import mimetypes
import os
import re
import threading
import time

import networkx as nx
from webob import Request, Response

from .. import metrics as metrics_mod
from ...authority import commands as C
from ...authority import model
from ...authority.events import TYPES as EVENT_TYPES
from ...authority.model import (BadRequest, Conflict, MappingError, NotFound,
                                dpid_str)

LOG = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB_DIR = os.path.join(HERE, 'web')
OPENAPI_PATH = os.path.join(HERE, 'openapi.json')
MAX_BODY = 1 << 20
MAX_WAIT = 30.0
MAX_STREAM = 3600.0
MAX_SEQ = 1 << 62
KEEPALIVE = 15.0


class MethodNotAllowed(MappingError):
    status = 405
    code = 'method-not-allowed'

    def __init__(self, message, allowed):
        super().__init__(message)
        self.headers = [('Allow', ', '.join(sorted(allowed)))]


class TooLarge(MappingError):
    status = 413
    code = 'too-large'


# --- waking long-polls ------------------------------------------------------

class HubNotifier:
    """Long-poll waits in the os-ken hub: one hub.Event per waiter."""

    def __init__(self):
        self._waiting = set()

    def notify(self, _event=None):
        for waiter in list(self._waiting):
            waiter.set()

    def wait_for(self, predicate, timeout):
        from os_ken.lib import hub   # eventlet is set up by os-ken
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            waiter = hub.Event()
            self._waiting.add(waiter)
            try:
                waiter.wait(left)
            finally:
                self._waiting.discard(waiter)
        return True


class ThreadNotifier:
    """The same for servers with OS threads (tests, wsgiref)."""

    def __init__(self):
        self._cond = threading.Condition()

    def notify(self, _event=None):
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate, timeout):
        with self._cond:
            return self._cond.wait_for(predicate, timeout)


# --- the route table ---------------------------------------------------------

ROUTES = []


class Route:
    def __init__(self, method, template, handler):
        self.method = method
        self.template = template
        self.handler = handler
        pattern = re.sub(r'\{(\w+)\}', r'(?P<\1>[^/]+)', template)
        self.regex = re.compile(pattern)


def route(method, template):
    def register(handler):
        ROUTES.append(Route(method, template, handler))
        return handler
    return register


def route_table():
    """``{(METHOD, template)}``: what the OpenAPI document must describe."""
    return {(r.method, r.template) for r in ROUTES}


# --- parsing helpers ---------------------------------------------------------

def _json_constant(name):
    raise ValueError('%s is not JSON' % name)


def read_body(req):
    """The request body as a JSON object (dict), or BadRequest."""
    if req.content_length is not None and req.content_length > MAX_BODY:
        raise TooLarge('request body larger than %d bytes' % MAX_BODY)
    raw = req.body_file.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise TooLarge('request body larger than %d bytes' % MAX_BODY)
    if not raw.strip():
        raise BadRequest('request body must be a JSON object')
    try:
        body = json.loads(raw.decode('utf-8'),
                          parse_constant=_json_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest('request body is not valid JSON: %s' % (
            str(exc)[:200],)) from None
    if not isinstance(body, dict):
        raise BadRequest('request body must be a JSON object, not %s' %
                         type(body).__name__)
    return body


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


KINDS = {
    'integer': _is_int,
    'string': lambda v: isinstance(v, str),
    'object': lambda v: isinstance(v, dict),
    'array of strings': lambda v: isinstance(v, list) and all(
        isinstance(i, str) for i in v),
    'object of integers': lambda v: isinstance(v, dict) and all(
        _is_int(i) for i in v.values()),
}


def check_fields(body, spec, prefix=''):
    """Reject unknown fields, missing required ones and wrong JSON types.

    ``spec`` maps a field to ``(kind, required, nullable)``.
    """
    for name in body:
        if name not in spec:
            raise BadRequest('unknown field %r; expected %s' % (
                name, ', '.join(sorted(spec))), prefix + name)
    for name, (kind, required, nullable) in spec.items():
        if name not in body:
            if required:
                raise BadRequest('missing field %r' % name, prefix + name)
            continue
        value = body[name]
        if value is None and nullable:
            continue
        if not KINDS[kind](value):
            raise BadRequest('%s must be %s %s, not %s' % (
                prefix + name, 'an' if kind[0] in 'aeiou' else 'a', kind,
                json.dumps(value)[:80]), prefix + name)
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                printable(text, prefix + name)
    return body


CONTROL = re.compile(r'[\x00-\x1f\x7f]')


def printable(text, name):
    """No identifier, address or name of this API has control characters
    (the model's ``^...$`` patterns would let a trailing newline through)."""
    if CONTROL.search(text):
        raise BadRequest('%s must not contain control characters' % name,
                         name)
    return text


GATEWAY = {'mac': ('string', False, True),
           'ips': ('array of strings', False, False)}


def gateway_args(body):
    gateway = body.get('gateway')
    if gateway is None:
        return None, ()
    check_fields(gateway, GATEWAY, 'gateway.')
    return gateway.get('mac'), tuple(gateway.get('ips') or ())


def int_text(text, name, low, high):
    if not re.fullmatch(r'[0-9]{1,19}', text):
        raise BadRequest('%s must be an integer %d..%d, not %r' % (
            name, low, high, text[:40]), name)
    value = int(text)
    if not low <= value <= high:
        raise BadRequest('%s must be an integer %d..%d, not %d' % (
            name, low, high, value), name)
    return value


NUMBER = re.compile(r'-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,16})?'
                    r'([eE][-+]?[0-9]{1,3})?')


def float_text(text, name, low, high):
    """A JSON-syntax number (no nan/inf) within ``low..high``."""
    value = float(text) if NUMBER.fullmatch(text) else None
    if value is None or not low <= value <= high:
        raise BadRequest('%s must be a number of seconds %g..%g, not %r' % (
            name, low, high, text[:40]), name)
    return value


def path_vnid(text):
    if not re.fullmatch(r'[0-9]{1,19}', text):
        raise BadRequest('vnid must be an integer 1..%d (24 bits), not %r'
                         % (model.VNID_MAX, text[:40]), 'vnid')
    return model.norm_vnid(int(text))


def path_dpid(text):
    if not re.fullmatch(r'[0-9a-fA-F]{16}', text):
        raise BadRequest('dpid must be a datapath id of 16 hex digits, not '
                         '%r' % text[:40], 'dpid')
    return model.norm_dpid(text)


def path_port(text):
    return model.norm_name(printable(text, 'port_name'), 'port_name', 15)


def query(req, spec):
    """Query parameters: ``spec`` maps a name to a parser of its text;
    unknown or repeated parameters are refused (``type`` may repeat)."""
    got = {}
    for name, value in req.GET.items():
        if name not in spec:
            raise BadRequest('unknown query parameter %r; expected %s' % (
                name, ', '.join(sorted(spec)) or 'none'), name)
        got.setdefault(name, []).append(value)
    out = {}
    for name, values in got.items():
        multi, parse = spec[name]
        if len(values) > 1 and not multi:
            raise BadRequest('query parameter %r given twice' % name, name)
        out[name] = parse(values if multi else values[0], name)
    return out


def _text(value, _name):
    return value


def _event_types(values, name):
    kinds = set()
    for value in values:
        for kind in value.split(','):
            if kind not in EVENT_TYPES:
                raise BadRequest('%s must be event types among %s, not %r' % (
                    name, ', '.join(EVENT_TYPES), kind[:40]), name)
            kinds.add(kind)
    return kinds


# --- rendering ---------------------------------------------------------------

def json_response(status, body, headers=None):
    resp = Response(status=status, headerlist=list(headers or []))
    if status == 204:
        return resp
    resp.content_type = 'application/json'
    resp.charset = None
    resp.body = (json.dumps(body, default=str, indent=None) + '\n').encode()
    return resp


def error_response(status, code, message, field=None, headers=None):
    return json_response(status, {'error': {
        'code': code, 'message': message, 'field': field}}, headers)


# --- the WSGI application ----------------------------------------------------

class RestApp:
    """The WSGI callable.  ``ctl`` is the app (app.NVO3App) or anything
    with what REST uses of it: ``execute(command)`` (every write, answered
    once it is durable and its flows are on their way), ``views``
    (authority/views.py), ``event_log``, ``counters``,
    ``sync_status(dpid)``, ``audit_now(dpid)`` and ``store_stats()``."""

    def __init__(self, ctl, notifier=None, metrics=None):
        self.ctl = ctl
        self.views = ctl.views
        self.event_log = ctl.event_log
        self.notifier = notifier or HubNotifier()
        self.event_log.listeners.append(self.notifier.notify)
        self.metrics = metrics or metrics_mod.Metrics(
            ctl.counters, ctl.views, ctl.event_log, ctl.sync_status,
            ctl.store_stats)
        with open(OPENAPI_PATH, 'rb') as handle:
            self.openapi = handle.read()

    def __call__(self, environ, start_response):
        started = time.monotonic()
        req = Request(environ)
        label = 'unmatched'
        try:
            try:
                found, params = self._match(req)
            except UnicodeDecodeError:
                raise BadRequest('the request URL is not valid UTF-8') \
                    from None
            label = found.template
            try:
                req.GET.items()
            except UnicodeDecodeError:
                raise BadRequest('the query string is not valid UTF-8') \
                    from None
            resp = found.handler(self, req, **params)
        except MappingError as exc:
            headers = getattr(exc, 'headers', None)
            resp = error_response(exc.status, exc.code, exc.message,
                                  exc.field, headers)
        except Exception:  # pylint: disable=broad-except
            LOG.exception('REST %s %s failed', req.method,
                          environ.get('PATH_INFO'))
            resp = error_response(500, 'internal-error',
                                  'internal error; see the app log')
        self.metrics.observe_request(req.method, label, resp.status_code,
                                     time.monotonic() - started)
        return resp(environ, start_response)

    @staticmethod
    def _match(req):
        path = req.path_info
        allowed = []
        for candidate in ROUTES:
            hit = candidate.regex.fullmatch(path)
            if hit is None:
                continue
            if candidate.method == req.method:
                return candidate, hit.groupdict()
            allowed.append(candidate.method)
        if allowed:
            raise MethodNotAllowed('%s is not allowed on %s; allowed: %s' % (
                req.method, path[:100], ', '.join(sorted(allowed))), allowed)
        raise NotFound('no such resource: %s' % path[:100])

    def execute(self, command):
        """Every write: one command, committed by the controller."""
        return self.ctl.execute(command)

    # -- views --

    def nve_view(self, nve):
        """The NVE's view with its channel's sync state."""
        view = self.views.nve(nve)
        status = self.ctl.sync_status(nve.dpid)
        for key in ('synced', 'in_sync', 'requested_seq', 'applied_seq',
                    'pending'):
            view[key] = status.get(key)
        return view

    @staticmethod
    def mapping_view(entry):
        return dict(entry, origin=entry.get('source'))


# --- VNs ---------------------------------------------------------------------

VN_CREATE = {'vnid': ('integer', True, False), 'name': ('string', True, False),
             'service': ('string', False, False),
             'encap': ('string', False, False),
             'gateway': ('object', False, True)}
VN_UPDATE = {'name': ('string', False, False),
             'service': ('string', False, False),
             'encap': ('string', False, False),
             'gateway': ('object', False, True)}


@route('GET', '/v1/vns')
def list_vns(api, req):
    query(req, {})
    return json_response(200, api.views.vns())


@route('POST', '/v1/vns')
def create_vn(api, req):
    query(req, {})
    body = check_fields(read_body(req), VN_CREATE)
    gw_mac, gw_ips = gateway_args(body)
    vn = api.execute(C.CreateVN(
        body['vnid'], body['name'], body.get('service', 'l2'),
        body.get('encap', 'vxlan'), gw_mac, gw_ips))
    return json_response(201, api.views.vn(vn),
                         [('Location', '/v1/vns/%d' % vn.vnid)])


@route('GET', '/v1/vns/{vnid}')
def get_vn(api, req, vnid):
    query(req, {})
    return json_response(200, api.views.vn(api.views.get_vn(
        path_vnid(vnid))))


@route('PATCH', '/v1/vns/{vnid}')
def update_vn(api, req, vnid):
    query(req, {})
    vnid = path_vnid(vnid)
    body = read_body(req)
    if 'vnid' in body:
        raise BadRequest('vnid cannot be changed; delete and create',
                         'vnid')
    check_fields(body, VN_UPDATE)
    changes = {k: body[k] for k in ('name', 'service', 'encap') if k in body}
    if 'gateway' in body:
        changes['gateway_mac'], changes['gateway_ips'] = gateway_args(body)
    api.views.get_vn(vnid)          # 404 before the command
    vn = api.execute(C.UpdateVN(vnid, changes))
    return json_response(200, api.views.vn(vn))


@route('DELETE', '/v1/vns/{vnid}')
def delete_vn(api, req, vnid):
    query(req, {})
    vnid = path_vnid(vnid)
    api.views.get_vn(vnid)
    api.execute(C.DeleteVN(vnid))
    return json_response(204, None)


@route('GET', '/v1/vns/{vnid}/members')
def vn_members(api, req, vnid):
    query(req, {})
    return json_response(200, api.views.vn_members(path_vnid(vnid)))


@route('GET', '/v1/vns/{vnid}/mappings')
def vn_mappings(api, req, vnid):
    query(req, {})
    return json_response(200, [api.mapping_view(e) for e in
                               api.views.vn_mappings(path_vnid(vnid))])


@route('GET', '/v1/mappings')
def find_mappings(api, req):
    args = query(req, {'mac': (False, _text), 'ip': (False, _text)})
    entries = api.views.find_mappings(args.get('mac'), args.get('ip'))
    return json_response(200, [api.mapping_view(e) for e in entries])


@route('GET', '/v1/tesid')
def tesid(api, req):
    args = query(req, {'vnid': (False, _text), 'mac': (False, _text)})
    for name in ('vnid', 'mac'):
        if name not in args:
            raise BadRequest('query parameter %r is required' % name, name)
    vnid = path_vnid(args['vnid'])
    return json_response(200, api.views.tesid(vnid, args['mac']))


# --- NVEs and their ports ----------------------------------------------------

NVE_PUT = {'vtep_ip': ('string', False, False),
           'name': ('string', False, False)}
PORT_PUT = {'vnid': ('integer', False, False),
            'vlans': ('object of integers', False, False)}


@route('GET', '/v1/nves')
def list_nves(api, req):
    query(req, {})
    return json_response(200, [api.nve_view(api.views.get_nve(dpid))
                               for dpid in api.views.nve_ids()])


@route('GET', '/v1/nves/{dpid}')
def get_nve(api, req, dpid):
    query(req, {})
    return json_response(200, api.nve_view(api.views.get_nve(
        path_dpid(dpid))))


@route('GET', '/v1/nves/{dpid}/audit')
def audit_nve(api, req, dpid):
    """Dump the NVE's flows now and compare them with what the database
    implies (law 5); differences found are repaired, and reported here."""
    query(req, {})
    nve = api.views.get_nve(path_dpid(dpid))
    result = api.ctl.audit_now(nve.dpid)
    if result is None:
        raise Conflict('NVE %s is not connected (or did not answer the '
                       'dump)' % model.dpid_str(nve.dpid), 'dpid')
    return json_response(200, result)


@route('PUT', '/v1/nves/{dpid}')
def put_nve(api, req, dpid):
    query(req, {})
    dpid = path_dpid(dpid)
    body = check_fields(read_body(req), NVE_PUT)
    existed = api.views.has_nve(dpid)
    nve = api.execute(C.RegisterNVE(dpid, body.get('vtep_ip'),
                                    body.get('name')))
    return json_response(200 if existed else 201, api.nve_view(nve))


@route('PUT', '/v1/nves/{dpid}/ports/{port_name}')
def bind_port(api, req, dpid, port_name):
    query(req, {})
    dpid, port = path_dpid(dpid), path_port(port_name)
    body = check_fields(read_body(req), PORT_PUT)
    if ('vnid' in body) == ('vlans' in body):
        raise BadRequest('give either "vnid" (whole port) or "vlans" '
                         '(VLAN ID -> VNID)', 'vnid')
    for vlan in body.get('vlans') or {}:
        if not re.fullmatch(r'[0-9]{1,4}', vlan):
            raise BadRequest('vlans keys must be VLAN IDs 1..4094, not %r'
                             % vlan[:40], 'vlans')
    nve = api.views.get_nve(dpid)
    existed = port in nve.bindings
    binding = api.execute(C.BindPort(dpid, port, vnid=body.get('vnid'),
                                     vlans=body.get('vlans')))
    view = dict(binding.to_dict(), nve=dpid_str(dpid), port=port)
    return json_response(200 if existed else 201, view)


@route('DELETE', '/v1/nves/{dpid}/ports/{port_name}')
def unbind_port(api, req, dpid, port_name):
    query(req, {})
    dpid, port = path_dpid(dpid), path_port(port_name)
    nve = api.views.get_nve(dpid)
    if port not in nve.bindings:
        raise NotFound('port %s of NVE %s is not bound' % (
            port, dpid_str(dpid)), 'port_name')
    api.execute(C.UnbindPort(dpid, port))
    return json_response(204, None)


# --- sync, topology, events --------------------------------------------------

@route('GET', '/v1/sync')
def sync(api, req):
    """Acknowledged state: every connected NVE applied all its changes."""
    query(req, {})
    nves = {dpid_str(d): api.ctl.sync_status(d)
            for d in api.views.nve_ids()}
    in_sync = all(s['in_sync'] for s in nves.values() if s['connected'])
    return json_response(200, {'in_sync': in_sync, 'nves': nves})


@route('GET', '/v1/topology')
def topology(api, req):
    query(req, {})
    return json_response(200, nx.node_link_data(
        api.views.topology_graph(), edges='edges'))


EVENTS_QUERY = {
    'since': (False, lambda t, n: int_text(t, n, 0, MAX_SEQ)),
    'wait': (False, lambda t, n: float_text(t, n, 0, MAX_WAIT)),
    'limit': (False, lambda t, n: int_text(t, n, 1, 1000)),
    'type': (True, _event_types),
}


def select_events(log, since, kinds, limit, newest):
    """Events after ``since`` of ``kinds``: the newest ``limit`` when
    ``newest`` (no ``since`` given), else the oldest (paging forward)."""
    found = log.since(since or 0, kinds=kinds)
    more = len(found) > limit
    page = found[-limit:] if newest else found[:limit]
    if more and not newest:
        next_since = page[-1]['seq']
    else:
        next_since = log.seq
        more = False
    return page, next_since, more


@route('GET', '/v1/events')
def events(api, req):
    """Recent events; with ``since`` and ``wait``, a long-poll."""
    args = query(req, EVENTS_QUERY)
    log = api.event_log
    since, kinds = args.get('since'), args.get('type')
    limit = args.get('limit', 100)
    newest = since is None
    base = since or 0
    page, next_since, more = select_events(log, base, kinds, limit, newest)
    wait = args.get('wait', 0.0)
    if not page and wait > 0 and base <= log.seq:
        api.notifier.wait_for(
            lambda: bool(log.since(base, kinds=kinds)), wait)
        page, next_since, more = select_events(log, base, kinds, limit,
                                               newest)
    return json_response(200, {'events': page, 'next_since': next_since,
                               'seq': log.seq, 'more': more})


STREAM_QUERY = {
    'since': (False, lambda t, n: int_text(t, n, 0, MAX_SEQ)),
    'timeout': (False, lambda t, n: float_text(t, n, 0, MAX_STREAM)),
    'type': (True, _event_types),
}


@route('GET', '/v1/events/stream')
def event_stream(api, req):
    """Server-sent events: ``id`` is the sequence number, ``event`` the
    type; a reconnecting browser resumes after ``Last-Event-ID``."""
    args = query(req, STREAM_QUERY)
    log = api.event_log
    since = args.get('since')
    last_id = req.headers.get('Last-Event-ID')
    if since is None and last_id:
        since = int_text(last_id, 'Last-Event-ID', 0, MAX_SEQ)
    if since is None:
        since = log.seq
    # eventlet.wsgi holds back writes below 4 KiB unless told otherwise;
    # an event must leave when it happens.
    req.environ['eventlet.minimum_write_chunk_size'] = 0
    resp = Response(status=200, content_type='text/event-stream',
                    charset='utf-8')
    resp.headers['Cache-Control'] = 'no-cache'
    resp.headers['X-Accel-Buffering'] = 'no'
    resp.app_iter = _sse(api.notifier, log, since, args.get('type'),
                         args.get('timeout', 300.0))
    return resp


def _sse(notifier, log, since, kinds, timeout):
    deadline = time.monotonic() + timeout
    yield b'retry: 2000\n\n'
    while True:
        for event in log.since(since, kinds=kinds):
            since = event['seq']
            yield ('id: %d\nevent: %s\ndata: %s\n\n' % (
                event['seq'], event['type'],
                json.dumps(event, default=str))).encode()
        if since < log.seq and kinds:
            since = log.seq
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if not notifier.wait_for(
                lambda: bool(log.since(since, kinds=kinds)),
                min(left, KEEPALIVE)):
            if deadline - time.monotonic() > 0:
                yield b': keepalive\n\n'


# --- documents, metrics, the web page ----------------------------------------

@route('GET', '/v1/openapi.json')
def openapi(api, req):
    return Response(status=200, body=api.openapi,
                    content_type='application/json', charset=None)


@route('GET', '/metrics')
def prometheus(api, req):
    body, content_type = api.metrics.exposition()
    resp = Response(status=200, body=body)
    resp.headers['Content-Type'] = content_type
    return resp


def _static(name):
    path = os.path.join(WEB_DIR, name)
    if not re.fullmatch(r'[A-Za-z0-9_-][A-Za-z0-9._-]*', name) \
            or not os.path.isfile(path):
        raise NotFound('no such file: /ui/%s' % name[:100], 'path')
    with open(path, 'rb') as handle:
        body = handle.read()
    content_type = mimetypes.guess_type(name)[0] or 'application/octet-stream'
    if name.endswith('.js'):
        content_type = 'application/javascript'
    resp = Response(status=200, body=body, content_type=content_type,
                    charset='utf-8' if content_type.startswith(
                        ('text/', 'application/javascript')) else None)
    resp.headers['Cache-Control'] = 'no-cache'
    return resp


@route('GET', '/')
def index(api, req):
    return _static('index.html')


@route('GET', '/ui/{path}')
def ui_file(api, req, path):
    return _static(path)


def make_app(ctl, notifier=None, metrics=None):
    """The WSGI app for ``ctl`` (see the module docstring)."""
    return RestApp(ctl, notifier, metrics)
