"""REST API v1 on WebOb, served by the app's hub: the server.

No framework: a route table of (method, path template, handler) that the
OpenAPI document (openapi.json) must match exactly; a test walks both.  The
handlers live one module per resource group (vns.py, nves.py,
migrations.py, events.py, status.py, docs.py), each registering its routes
with :func:`route`; they stay thin -- parse and validate (parse.py), call,
render -- because every decision lives in the authority.

Why validation happens twice: the handlers check the *shape* of a request
(a JSON object, no unknown field, the right JSON types, path and query
syntax) before anything is called, so a wrong request is answered with the
field it got wrong; the database then checks the *values* (ranges, existence,
conflicts) before it mutates anything.  Every write is one command
(authority/commands.py) given to ``ctl.execute()``, which commits (persists,
plans flows) only what the database accepted, so a request that fails
changes nothing.

Who may: with an auth file (northbound/auth.py), every ``/v1`` request
needs ``Authorization: Bearer <token>`` (401 ``unauthorized`` without a
valid one, with ``WWW-Authenticate: Bearer``), and only an ``admin``
token may write (403 ``forbidden`` for a reader's); ``/metrics`` and the
web page's files are public.  The token's name is the ``actor`` of every
command a request gives (``rest`` without an auth file): the command
carries it, and so does every event it causes (the audit trail).

Errors are ``{"error": {"code", "message", "field"}}`` with 400/401/403/404/
405/408/409/413/415, and 503 from an instance of a cluster that cannot take
writes now (no etcd lease, etcd out of reach); anything else is a bug: it is logged with its traceback and
answered 500, and the tests (including OpenAPI-driven fuzzing) prove no
input gets there.

What a browser or a broken client may send is refused before any handler
runs: a ``Host`` that is neither an IP address nor an allowed name (DNS
rebinding, 400), a body not sent as ``application/json`` (cross-site
request forgery, 415), a body cut short (400) or sent slower than the
request deadline (408) (parse.read_body); an unknown HTTP method is
counted as ``other``, never as a metric label of its own.  :class:`Server`
serves the app: eventlet's HTTP/1.1 protocol behind a runtime/listener.py
Listener (connection limit, idle and request timeouts, an accept loop that
survives running out of descriptors).

Long-polling (``GET /v1/events?since=&wait=``) and server-sent events
(``GET /v1/events/stream``) wait on a :class:`HubNotifier` woken by an
EventLog listener: under osken-manager that is an ``os_ken.lib.hub.Event``,
so a waiting request parks its own green thread and never the event loop.
"""

import dataclasses
import ipaddress
import json
import logging
import os
import re
import threading
import time
from urllib.parse import urlencode

import greenlet
from webob import Request, Response

from .. import auth as auth_mod
from .. import metrics as metrics_mod
from ...authority.addresses import dpid_str
from ...authority.errors import BadRequest, MappingError, NotFound
from ...runtime import listener as listener_mod

LOG = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB_DIR = os.path.join(HERE, 'web')
OPENAPI_PATH = os.path.join(HERE, 'openapi.json')


class MethodNotAllowed(MappingError):
    """A path that exists, with another method (405, with Allow)."""

    status = 405
    code = 'method-not-allowed'

    def __init__(self, message, allowed):
        super().__init__(message)
        self.headers = [('Allow', ', '.join(sorted(allowed)))]


# Methods a metric label may name; any other method string is 'other' (a
# client choosing the method must not choose the metrics' size).
LABELLED_METHODS = frozenset(('GET', 'HEAD', 'POST', 'PUT', 'PATCH',
                              'DELETE', 'OPTIONS'))
# What a reader token may do.
READ_METHODS = frozenset(('GET', 'HEAD'))
# The actor of REST writes without an auth file.
ANONYMOUS = 'rest'


def public(path):
    """Whether ``path`` is served without a token: the metrics (scrapers)
    and the web page's files (its requests to /v1 carry the token)."""
    return path in ('/metrics', '/') or path.startswith('/ui/')


# --- waking long-polls ------------------------------------------------------

class HubNotifier:
    """Long-poll waits in the os-ken hub: one hub.Event per waiter."""

    def __init__(self):
        self._waiting = set()

    def notify(self, _event=None):
        """Wake every waiting request (an EventLog listener)."""
        for waiter in list(self._waiting):
            waiter.set()

    def wait_for(self, predicate, timeout):
        """Wait until ``predicate()`` holds or ``timeout`` passes; whether it
        holds."""
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
        """Wake every waiting request (an EventLog listener)."""
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate, timeout):
        """Wait until ``predicate()`` holds or ``timeout`` passes; whether it
        holds."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)


# --- dry runs -----------------------------------------------------------------

DPID_RE = re.compile(r'[0-9a-fA-F]{16}')
DRY_RUN = 'dry_run'


def dry_run_asked(req):
    """Whether the request asks for a dry run (``?dry_run=true``); the
    parameter is taken out of the query, so handlers never see it.  Only
    writes can be tried."""
    values = req.GET.getall(DRY_RUN)
    if not values:
        return False
    if len(values) > 1 or values[0] not in ('true', 'false'):
        raise BadRequest('dry_run must be true or false', DRY_RUN)
    if req.method in ('GET', 'HEAD'):
        raise BadRequest('dry_run is for writes (POST, PUT, PATCH, DELETE)',
                         DRY_RUN)
    query = [(k, v) for k, v in req.GET.items() if k != DRY_RUN]
    req.query_string = urlencode(query)
    return values[0] == 'true'


class DryRunAnswer(Exception):
    """What a write would have done (raised by a dry run's execute)."""

    def __init__(self, report):
        super().__init__('dry run')
        self.report = report


class _DryRun:
    """The API as a handler sees it in a dry run: ``execute`` runs the
    command as a dry run (authority/dryrun.py) and answers with what it
    would do; everything else is the API's.  Every handler that writes
    through ``api.execute`` gets dry runs this way, unchanged."""

    def __init__(self, api):
        self._api = api

    def __getattr__(self, name):
        return getattr(self._api, name)

    def execute(self, command):
        """Try ``command``: raises DryRunAnswer with what it would do."""
        raise DryRunAnswer(self._api.ctl.execute(
            self._api.with_actor(command), dry_run=True).to_dict())


# --- the route table ---------------------------------------------------------

ROUTES = []


class Route:
    """One route: a method, a path template and its handler."""

    def __init__(self, method, template, handler):
        self.method = method
        self.template = template
        self.handler = handler
        pattern = re.sub(r'\{(\w+)\}', r'(?P<\1>[^/]+)', template)
        self.regex = re.compile(pattern)


def route(method, template):
    """Register the decorated handler for ``method`` on ``template``."""
    def register(handler):
        ROUTES.append(Route(method, template, handler))
        return handler
    return register


def route_table():
    """``{(METHOD, template)}``: what the OpenAPI document must describe."""
    return {(r.method, r.template) for r in ROUTES}


# --- rendering ---------------------------------------------------------------

def json_response(status, body, headers=None):
    """A JSON response (no body for 204)."""
    resp = Response(status=status, headerlist=list(headers or []))
    if status == 204:
        return resp
    resp.content_type = 'application/json'
    resp.charset = None
    resp.body = (json.dumps(body, default=str, indent=None) + '\n').encode()
    return resp


def error_response(status, code, message, field=None, headers=None):
    """An error response ``{"error": {"code", "message", "field"}}``."""
    return json_response(status, {'error': {
        'code': code, 'message': message, 'field': field}}, headers)


# --- the WSGI application ----------------------------------------------------

class RestApp:
    """The WSGI callable.  ``ctl`` is the app (app.NVO3App) or anything
    with what REST uses of it: ``execute(command)`` (every write, answered
    once it is durable and its flows are on their way), ``views``
    (authority/views.py), ``event_log``, ``counters``,
    ``sync_status(dpid)``, ``audit_now(dpid)``, ``store_stats()`` and
    ``cluster_status()``.
    ``auth`` (northbound/auth.py's Auth, or None: nothing checked) may be
    replaced while serving (the app re-reads the file on SIGHUP)."""

    def __init__(self, ctl, notifier=None, metrics=None,
                 allowed_hosts=('localhost',), auth=None):
        self.ctl = ctl
        self.auth = auth
        self._actors = {}            # greenlet -> actor of its request
        self.allowed_hosts = frozenset(h.lower().rstrip('.')
                                       for h in allowed_hosts)
        self.views = ctl.views
        self.event_log = ctl.event_log
        self.notifier = notifier or HubNotifier()
        self.event_log.listeners.append(self.notifier.notify)
        self.metrics = metrics or metrics_mod.Metrics(
            ctl.counters, ctl.views, ctl.event_log, ctl.sync_status,
            ctl.store_stats, getattr(ctl, 'cluster_status', None),
            clock=getattr(ctl, 'now', time.time),
            bgp_status=getattr(ctl, 'bgp_status', None))
        with open(OPENAPI_PATH, 'rb') as handle:
            self.openapi = handle.read()

    def __call__(self, environ, start_response):
        started = time.monotonic()
        req = Request(environ)
        label = 'unmatched'
        me = greenlet.getcurrent()
        try:
            self._check_host(req)
            principal = self._authenticate(req)
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
            if principal is not None and req.method not in READ_METHODS \
                    and not principal.may_write:
                self.ctl.counters['rest_forbidden'] += 1
                raise auth_mod.Forbidden(
                    'token %s may read only (role %s); a write needs an '
                    'admin token' % (principal.name, principal.role),
                    'Authorization')
            self._actors[me] = principal.name if principal is not None \
                else ANONYMOUS
            api = self
            if dry_run_asked(req):
                api = _DryRun(self)
            if 'dpid' in params:
                params['dpid'] = self.path_nve(params['dpid'])
            resp = found.handler(api, req, **params)
        except DryRunAnswer as answer:
            resp = json_response(200, answer.report)
        except MappingError as exc:
            headers = getattr(exc, 'headers', None)
            resp = error_response(exc.status, exc.code, exc.message,
                                  exc.field, headers)
        except Exception:  # pylint: disable=broad-except
            LOG.exception('REST %s %s failed', req.method,
                          environ.get('PATH_INFO'))
            resp = error_response(500, 'internal-error',
                                  'internal error; see the app log')
        finally:
            self._actors.pop(me, None)
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

    def _authenticate(self, req):
        """Who sent ``req`` (a Principal), None when nothing is checked
        (no auth file, or a public path); Unauthorized otherwise."""
        auth = self.auth
        if auth is None or public(req.path_info):
            return None
        token = auth_mod.bearer(req.headers.get('Authorization'))
        if token is None:
            self.ctl.counters['rest_unauthorized'] += 1
            raise auth_mod.Unauthorized(
                'this API needs a token: send "Authorization: Bearer '
                '<token>"', 'Authorization')
        principal = auth.token(token)
        if principal is None:
            self.ctl.counters['rest_unauthorized'] += 1
            raise auth_mod.Unauthorized('the token is not valid',
                                        'Authorization', invalid=True)
        return principal

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
        """Every write: one command, committed by the controller, carrying
        who asked (the token's name) as its actor."""
        return self.ctl.execute(self.with_actor(command))

    def with_actor(self, command):
        """``command`` naming the maker of the request being served."""
        actor = self._actors.get(greenlet.getcurrent(), ANONYMOUS)
        if getattr(command, 'actor', False) is None:
            command = dataclasses.replace(command, actor=actor)
        return command

    def path_nve(self, text):
        """A path's NVE as its dpid text: a datapath id as it is, or an
        NVE's name resolved (400 when no NVE has it).  Every route with
        ``{dpid}`` takes names this way."""
        if not text or DPID_RE.fullmatch(text) or not self.views.has_names():
            return text            # parse.path_dpid says what is wrong
        try:
            return dpid_str(self.views.resolve_nve(text))
        except NotFound:
            raise BadRequest('dpid must be a datapath id of 16 hex digits or '
                             'the name of a known NVE, not %r' % text[:40],
                             'dpid') from None

    # -- views --

    def nve_view(self, nve):
        """The NVE's view with its channel's sync state."""
        view = self.views.nve(nve)
        status = self.ctl.sync_status(nve.dpid)
        for key in ('synced', 'in_sync', 'requested_seq', 'applied_seq',
                    'pending'):
            view[key] = status.get(key)
        view['flows_failed'] = status.get('failed', 0)
        return view

    @staticmethod
    def mapping_view(entry):
        """A mapping entry as REST shows it (with its origin: how it was
        learned, ``external`` for a host of an external network,
        ``interconnect`` for an allowed MAC of another VN)."""
        return dict(entry, origin='external' if entry.get('external')
                    else entry.get('source'))


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
    runtime/listener.py Listener accepting (it survives running out of
    descriptors, bounds the connections and closes idle and slow ones).

    ``idle_timeout``: a connection waiting for its (next) request line;
    ``request_timeout``: reading a request's line, headers and body (the
    body by parse.read_body, through the ``nvo3.deadline`` of the
    environ); ``tls``: an SSL context to serve https with (its handshake
    within ``request_timeout``)."""

    def __init__(self, app, sock, max_connections=256, idle_timeout=30.0,
                 request_timeout=10.0, counters=None, log=None, tls=None):
        import eventlet.wsgi

        timeout = request_timeout or None

        class Protocol(eventlet.wsgi.HttpProtocol):
            """eventlet's HTTP/1.1, telling the app its request's
            deadline."""

            def get_environ(self):
                """The WSGI environ, with the connection and deadline."""
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
            counters=counters, log=log, tls=tls,
            tls_timeout=request_timeout)

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
        """The TCP port REST listens on."""
        return self.sock.getsockname()[1]

    def serve_forever(self):
        """Accept and serve clients until the listening socket closes."""
        self.listener.serve_forever()


def make_app(ctl, notifier=None, metrics=None, allowed_hosts=('localhost',),
             auth=None):
    """The WSGI app for ``ctl`` (see the module docstring)."""
    return RestApp(ctl, notifier, metrics, allowed_hosts, auth)
