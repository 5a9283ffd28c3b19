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

Errors are ``{"error": {"code", "message", "field"}}`` with 400/404/405/408/
409/413/415; anything else is a bug: it is logged with its traceback and
answered 500, and the tests (including OpenAPI-driven fuzzing) prove no
input gets there.

What a browser or a broken client may send is refused before any handler
runs: a ``Host`` that is neither an IP address nor an allowed name (DNS
rebinding, 400), a body not sent as ``application/json`` (cross-site
request forgery, 415), a body cut short (400) or sent slower than the
request deadline (408); an unknown HTTP method is counted as ``other``,
never as a metric label of its own.  :class:`Server` serves the app:
eventlet's HTTP/1.1 protocol behind a listener.Listener (connection limit,
idle and request timeouts, an accept loop that survives running out of
descriptors).

Long-polling (``GET /v1/events?since=&wait=``) and server-sent events
(``GET /v1/events/stream``) wait on a :class:`HubNotifier` woken by an
EventLog listener: under osken-manager that is an ``os_ken.lib.hub.Event``,
so a waiting request parks its own green thread and never the event loop.
"""

import functools
import ipaddress
import json
import logging
import mimetypes
import os
import re
import threading
import time

import networkx as nx
from webob import Request, Response

from . import metrics as metrics_mod
from . import model
from .events import TYPES as EVENT_TYPES
from .model import BadRequest, Conflict, MappingError, NotFound, dpid_str

LOG = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.abspath(__file__))
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


class UnsupportedMediaType(MappingError):
    status = 415
    code = 'unsupported-media-type'


class RequestTimeout(MappingError):
    status = 408
    code = 'request-timeout'


# Methods a metric label may name; any other method string is 'other' (a
# client choosing the method must not choose the metrics' size).
LABELLED_METHODS = frozenset(('GET', 'HEAD', 'POST', 'PUT', 'PATCH',
                              'DELETE', 'OPTIONS'))


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
    """The request body as a JSON object (dict), or BadRequest.

    Only ``Content-Type: application/json``: a browser sends that only
    after a CORS preflight this API never answers, so another site's page
    cannot post a form or a text body here (cross-site request forgery).
    A client that stops sending, or goes away, mid-body is a clear error,
    never a 500: see :func:`_read_raw`."""
    ctype = (req.content_type or '').strip().lower()
    if ctype != 'application/json':
        raise UnsupportedMediaType(
            'the request body must be JSON, sent with Content-Type: '
            'application/json, not %r' % (ctype[:60] or 'none',),
            'Content-Type')
    if req.content_length is not None and req.content_length > MAX_BODY:
        raise TooLarge('request body larger than %d bytes' % MAX_BODY)
    raw = _read_raw(req)
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


def _read_raw(req):
    """At most MAX_BODY + 1 bytes of the body, by the request's deadline
    (``nvo3.deadline`` in the environ, set by :class:`Server`)."""
    deadline = req.environ.get('nvo3.deadline')
    timer = None
    if deadline is not None:
        from os_ken.lib import hub
        left = deadline - time.monotonic()
        if left <= 0:
            raise RequestTimeout('the request was not sent in time')
        timer = hub.Timeout(left)
    try:
        return req.body_file.read(MAX_BODY + 1)
    except (OSError, ValueError) as exc:
        # webob's DisconnectionError (an IOError), eventlet's errors on a
        # chunked body cut short, a reset: the client went away.
        raise BadRequest('the request body ended early (%s)' % (
            str(exc)[:100],)) from None
    except BaseException as exc:
        if timer is not None and exc is timer:
            raise RequestTimeout('the request body was not sent in time '
                                 '(%g s for a whole request)' % (
                                     req.environ.get('nvo3.request_timeout',
                                                     0),)) from None
        raise
    finally:
        if timer is not None:
            timer.cancel()


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
    return model.norm_port_name(printable(text, 'port_name'))


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
    """The WSGI callable; ``ctl`` is the NVO3App or a test double."""

    def __init__(self, ctl, notifier=None, metrics=None,
                 allowed_hosts=('localhost',)):
        self.ctl = ctl
        self.authority = ctl.authority
        self.allowed_hosts = frozenset(h.lower().rstrip('.')
                                       for h in allowed_hosts)
        self.notifier = notifier or HubNotifier()
        self.authority.events.listeners.append(self.notifier.notify)
        self.metrics = metrics or metrics_mod.Metrics(
            ctl.authority, getattr(ctl, 'sync_status', None))
        with open(OPENAPI_PATH, 'rb') as handle:
            self.openapi = handle.read()

    @property
    def db(self):
        return self.authority.db

    def __call__(self, environ, start_response):
        started = time.monotonic()
        req = Request(environ)
        label = 'unmatched'
        try:
            self._check_host(req)
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
        method = req.method if req.method in LABELLED_METHODS else 'other'
        self.metrics.observe_request(method, label, resp.status_code,
                                     time.monotonic() - started)
        return resp(environ, start_response)

    def _check_host(self, req):
        """Answer only requests addressed to us by an IP address or a
        name the operator allowed: a page of another site whose name
        was re-pointed at this address (DNS rebinding) sends its own name
        as Host, and is refused."""
        host = req.environ.get('HTTP_HOST')
        if not host:
            return                      # HTTP/1.0 clients; no browser
        name = host.strip().lower()
        if name.startswith('['):
            name = name[1:].partition(']')[0]
        elif name.count(':') == 1:
            name = name.partition(':')[0]
        name = name.rstrip('.')
        if name in self.allowed_hosts:
            return
        try:
            ipaddress.ip_address(name)
            return
        except ValueError:
            pass
        raise BadRequest('Host %r is not this server: use its address, or '
                         'add the name to [nvo3] rest_allowed_hosts' % (
                             host[:80],), 'Host')

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

    def change(self, func, *args, with_origin=True, **kwargs):
        """Every write: one database call, committed by the controller.

        ``now`` (and ``origin``) are bound with functools.partial because
        ``Authority.run(now, func, *args, **kwargs)`` takes ``now`` itself:
        passing ``now=`` through ``ctl.change`` would collide with it.
        """
        bound = {'now': self.ctl.now()}
        if with_origin:
            bound['origin'] = 'rest'
        return self.ctl.change(functools.partial(func, **bound), *args,
                               **kwargs)

    # -- views --

    def vn_view(self, vn):
        view = vn.to_dict()
        view['nves'] = [dpid_str(d) for d in sorted(self.db.members(
            vn.vnid))]
        view['tenant_systems'] = len(self.db.attachments_in(vn.vnid))
        return view

    def nve_view(self, nve):
        view = self.authority.nve_view(nve)
        status = self.ctl.sync_status(nve.dpid)
        for key in ('synced', 'in_sync', 'requested_seq', 'applied_seq',
                    'pending'):
            view[key] = status.get(key)
        view['flows_failed'] = status.get('failed', 0)
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
    return json_response(200, [api.vn_view(vn) for _, vn in
                               sorted(api.db.vns.items())])


@route('POST', '/v1/vns')
def create_vn(api, req):
    query(req, {})
    body = check_fields(read_body(req), VN_CREATE)
    gw_mac, gw_ips = gateway_args(body)
    vn = api.change(api.db.create_vn, body['vnid'], body['name'],
                    body.get('service', 'l2'), body.get('encap', 'vxlan'),
                    gw_mac, gw_ips)
    return json_response(201, api.vn_view(vn),
                         [('Location', '/v1/vns/%d' % vn.vnid)])


@route('GET', '/v1/vns/{vnid}')
def get_vn(api, req, vnid):
    query(req, {})
    return json_response(200, api.vn_view(api.db.get_vn(path_vnid(vnid))))


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
    api.db.get_vn(vnid)             # 404 before the (committing) change
    vn = api.change(api.db.update_vn, vnid, with_origin=False, **changes)
    return json_response(200, api.vn_view(vn))


@route('DELETE', '/v1/vns/{vnid}')
def delete_vn(api, req, vnid):
    query(req, {})
    vnid = path_vnid(vnid)
    api.db.get_vn(vnid)
    api.change(api.db.delete_vn, vnid, with_origin=False)
    return json_response(204, None)


@route('GET', '/v1/vns/{vnid}/members')
def vn_members(api, req, vnid):
    query(req, {})
    return json_response(200, api.authority.vn_members(path_vnid(vnid)))


@route('GET', '/v1/vns/{vnid}/mappings')
def vn_mappings(api, req, vnid):
    query(req, {})
    return json_response(200, [api.mapping_view(e) for e in
                               api.authority.vn_mappings(path_vnid(vnid))])


@route('GET', '/v1/mappings')
def find_mappings(api, req):
    args = query(req, {'mac': (False, _text), 'ip': (False, _text)})
    entries = api.authority.find_mappings(args.get('mac'), args.get('ip'))
    return json_response(200, [api.mapping_view(e) for e in entries])


@route('GET', '/v1/tesid')
def tesid(api, req):
    args = query(req, {'vnid': (False, _text), 'mac': (False, _text)})
    for name in ('vnid', 'mac'):
        if name not in args:
            raise BadRequest('query parameter %r is required' % name, name)
    vnid = path_vnid(args['vnid'])
    return json_response(200, api.db.tesid(vnid, args['mac']))


# --- NVEs and their ports ----------------------------------------------------

NVE_PUT = {'vtep_ip': ('string', False, False),
           'name': ('string', False, False)}
PORT_PUT = {'vnid': ('integer', False, False),
            'vlans': ('object of integers', False, False)}


@route('GET', '/v1/nves')
def list_nves(api, req):
    query(req, {})
    return json_response(200, [api.nve_view(nve) for _, nve in
                               sorted(api.db.nves.items())])


@route('GET', '/v1/nves/{dpid}')
def get_nve(api, req, dpid):
    query(req, {})
    return json_response(200, api.nve_view(api.db.get_nve(path_dpid(dpid))))


@route('GET', '/v1/nves/{dpid}/audit')
def audit_nve(api, req, dpid):
    """Dump the NVE's flows now and compare them with what the database
    implies (law 5); differences found are repaired, and reported here."""
    query(req, {})
    nve = api.db.get_nve(path_dpid(dpid))
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
    existed = dpid in api.db.nves
    nve = api.change(api.db.register_nve, dpid, body.get('vtep_ip'),
                     body.get('name'))
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
    nve = api.db.get_nve(dpid)
    existed = port in nve.bindings
    binding = api.change(api.db.bind_port, dpid, port,
                         vnid=body.get('vnid'), vlans=body.get('vlans'))
    view = dict(binding.to_dict(), nve=dpid_str(dpid), port=port)
    return json_response(200 if existed else 201, view)


@route('DELETE', '/v1/nves/{dpid}/ports/{port_name}')
def unbind_port(api, req, dpid, port_name):
    query(req, {})
    dpid, port = path_dpid(dpid), path_port(port_name)
    nve = api.db.get_nve(dpid)
    if port not in nve.bindings:
        raise NotFound('port %s of NVE %s is not bound' % (
            port, dpid_str(dpid)), 'port_name')
    api.change(api.db.unbind_port, dpid, port, with_origin=False)
    return json_response(204, None)


# --- sync, topology, events --------------------------------------------------

@route('GET', '/v1/sync')
def sync(api, req):
    """Acknowledged state: every connected NVE applied all its changes."""
    query(req, {})
    nves = {dpid_str(d): api.ctl.sync_status(d) for d in sorted(api.db.nves)}
    in_sync = all(s['in_sync'] for s in nves.values() if s['connected'])
    return json_response(200, {'in_sync': in_sync, 'nves': nves})


def topology_graph(authority):
    """VNs, NVEs and tenant systems as a networkx graph.

    Edges: ``member`` (VN-NVE, the draft's VN membership), ``attachment``
    (tenant system-NVE) and ``tunnel`` (between two member NVEs of one or
    more VNs; ``vnids`` lists them).
    """
    db = authority.db
    graph = nx.Graph()
    for vnid, vn in sorted(db.vns.items()):
        graph.add_node('vn:%d' % vnid, kind='vn', vnid=vnid, label=vn.name,
                       name=vn.name, service=vn.service, encap=vn.encap)
    for dpid, nve in sorted(db.nves.items()):
        graph.add_node('nve:' + dpid_str(dpid), kind='nve',
                       dpid=dpid_str(dpid), label=nve.name or dpid_str(dpid),
                       name=nve.name, vtep_ip=nve.vtep_ip,
                       connected=nve.dyn_connected)
    for (vnid, mac), att in sorted(db.attachments.items()):
        node = 'ts:%d:%s' % (vnid, mac)
        graph.add_node(node, kind='ts', vnid=vnid, mac=mac, label=mac,
                       ips=sorted(att.ips), origin=att.source)
        graph.add_edge(node, 'nve:' + dpid_str(att.nve), kind='attachment',
                       port=att.port, vlan=att.vlan, vnid=vnid)
    for vnid in sorted(db.vns):
        members = sorted(db.members(vnid))
        for dpid in members:
            graph.add_edge('vn:%d' % vnid, 'nve:' + dpid_str(dpid),
                           kind='member',
                           tenant_systems=db.count_at(vnid, dpid))
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                ends = ('nve:' + dpid_str(a), 'nve:' + dpid_str(b))
                if graph.has_edge(*ends):
                    graph.edges[ends]['vnids'].append(vnid)
                else:
                    graph.add_edge(*ends, kind='tunnel', vnids=[vnid])
    return graph


@route('GET', '/v1/topology')
def topology(api, req):
    query(req, {})
    return json_response(200, nx.node_link_data(
        topology_graph(api.authority), edges='edges'))


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
    log = api.authority.events
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
    log = api.authority.events
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


# --- serving: eventlet's HTTP/1.1 behind our accept loop and bounds ---------

ACCESS_LOG = logging.getLogger(__name__ + '.access')


class _ConnState(list):
    """eventlet.wsgi's ``[address, socket, state]`` of one connection,
    noting when ``state`` last changed (idle: waiting for a request line;
    request: reading the request, or the app has it) and whether the app
    has the request (``in_app``: its body is read by read_body, by the
    request's deadline)."""

    def __init__(self, addr, sock, now):
        super().__init__([addr, sock, 'idle'])
        self.since = now
        self.in_app = False

    def __setitem__(self, index, value):
        if index == 2 and value != self[2]:
            self.since = time.monotonic()
            if value == 'idle':
                self.in_app = False
        super().__setitem__(index, value)


class _HttpLog:
    """eventlet's server log: access lines at DEBUG (a client sending
    requests must not write the log); its errors bounded."""

    def __init__(self, peer_log):
        self.peer_log = peer_log

    @staticmethod
    def info(msg, *args, **_kwargs):
        ACCESS_LOG.debug('%s', msg % args if args else msg)

    debug = info

    def error(self, msg, *args, **_kwargs):
        text = msg % args if args else msg
        if self.peer_log is not None:
            self.peer_log.error('REST server: %s', text)
        else:
            LOG.error('REST server: %s', text)


class Server:
    """The REST API served: eventlet's HTTP/1.1 protocol, one
    listener.Listener accepting (it survives running out of descriptors,
    bounds the connections and closes idle and slow ones).

    ``idle_timeout``: a connection waiting for its (next) request line;
    ``request_timeout``: reading a request's line, headers and body (the
    body by read_body, through the ``nvo3.deadline`` of the environ)."""

    def __init__(self, app, sock, max_connections=256, idle_timeout=30.0,
                 request_timeout=10.0, counters=None, log=None):
        import eventlet.wsgi
        from . import listener as listener_mod

        timeout = request_timeout or None

        class Protocol(eventlet.wsgi.HttpProtocol):
            def get_environ(self):
                env = super().get_environ()
                state = self.conn_state
                env['nvo3.conn'] = state
                if timeout:
                    env['nvo3.deadline'] = state.since + timeout
                    env['nvo3.request_timeout'] = timeout
                return env

        self.app = app
        self.sock = sock
        self.wsgi = eventlet.wsgi.Server(
            sock, sock.getsockname(), self._app, log=_HttpLog(log),
            keepalive=idle_timeout or True, socket_timeout=timeout,
            protocol=Protocol, debug=False)
        self.listener = listener_mod.Listener(
            sock, 'rest', self._serve, self._phase, max_connections,
            timeouts={listener_mod.IDLE: idle_timeout,
                      listener_mod.READING: request_timeout},
            evict=(listener_mod.IDLE, listener_mod.READING),
            counters=counters, log=log)

    def _app(self, environ, start_response):
        state = environ.get('nvo3.conn')
        if state is not None:
            state.in_app = True      # idle again once the answer is sent
        return self.app(environ, start_response)

    def _serve(self, conn):
        state = conn.data = _ConnState(conn.addr, conn.sock, conn.accepted)
        conn.sock.settimeout(self.wsgi.socket_timeout)
        self.wsgi.process_request(state)

    @staticmethod
    def _phase(conn):
        from . import listener as listener_mod
        state = conn.data
        if state is None:
            return listener_mod.IDLE, conn.accepted
        if state[2] == 'idle':
            return listener_mod.IDLE, state.since
        if state[2] == 'request' and not state.in_app:
            return listener_mod.READING, state.since
        return listener_mod.BUSY, state.since

    @property
    def port(self):
        return self.sock.getsockname()[1]

    def serve_forever(self):
        self.listener.serve_forever()


def make_app(ctl, notifier=None, metrics=None, allowed_hosts=('localhost',)):
    """The WSGI app for ``ctl`` (see the module docstring)."""
    return RestApp(ctl, notifier, metrics, allowed_hosts)
