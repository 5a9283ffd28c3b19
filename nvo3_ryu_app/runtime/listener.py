"""Accept loops that survive running out of descriptors, and bounded,
timed-out connections, for the app's three servers.

os-ken's and eventlet's accept loops end on the first error they do not
expect: out of file descriptors (EMFILE), the RPC loop died for good,
REST's server returned and osken-manager exited when its OpenFlow listener
did.  And nothing bounded what a client may hold: enough idle TCP
connections filled REST's pool and REST stopped answering, idle
connections and half-sent requests were kept for ever.

:class:`Listener` is the one accept loop (REST, RPC, and OpenFlow in place
of os-ken's, see southbound/ofguard.py's ``install_openflow``):

* an accept that fails is never the end.  Out of descriptors, it *sheds*:
  it gives up a descriptor it keeps in reserve, accepts the waiting
  connection and closes it at once (the client is told now rather than
  left hanging in the backlog), closes the connection idle the longest,
  takes the reserve back, and backs off (10 ms doubling to 1 s) until
  accepting works again; one warning when it starts, one line when it is
  over (no failure for 5 s), every failure counted;
* at most ``max_connections`` at once: a new one takes the place of the
  longest-idle one (then of the oldest one still sending its request, or
  still in its OpenFlow handshake); if every connection is busy it is
  refused;
* a reaper closes connections idle, or sending their request, or
  handshaking, longer than their timeout;
* with ``tls`` (an SSL context, :func:`server_context`), each connection's
  TLS handshake runs in its own green thread, counts as the ``handshake``
  phase (bounded by ``tls_timeout`` and the reaper, evicted first when the
  connections are full) and a failed one is counted
  (``<name>_tls_failed``) and logged at a bounded rate, never a traceback:
  a client that opens a connection and never says hello holds nothing for
  long, over TLS too.

What "idle" and "sending" mean is the server's: each gives
``phase(conn) -> (phase, since)``.
"""

import errno
import logging
import os
import socket
import time

from os_ken.lib import hub

LOG = logging.getLogger(__name__)

# Errors after which accepting may work again later.
EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# A connection that went away before we took it: just go on.
GONE = {errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO, errno.EINTR,
        errno.EAGAIN, errno.EPERM}
BACKOFF_MIN, BACKOFF_MAX = 0.01, 1.0
REAP_INTERVAL = 0.5
# An episode of failed accepts is over once none failed for this long
# (accepts succeed in between while connections are shed).
QUIET = 5.0

IDLE, READING, BUSY, HANDSHAKE = 'idle', 'reading', 'busy', 'handshake'


class Conn:
    """One accepted connection."""

    __slots__ = ('sock', 'addr', 'accepted', 'data', 'handshaking',
                 '__weakref__')

    def __init__(self, sock, addr, now):
        self.sock = sock
        self.addr = addr
        self.accepted = now
        self.data = None             # the server's own state
        self.handshaking = False     # in its TLS handshake


def close_now(sock):
    """Make whoever reads or writes ``sock`` see the end at once."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def close_conn(conn):
    """Close connection ``conn`` (a listener's default way to close)."""
    close_now(conn.sock)


class Listener:
    """An accept loop with bounded connections (module docstring).

    ``serve(conn)`` runs in its own green thread per connection and owns
    it; ``phase(conn)`` says what it is doing; ``timeouts`` maps a phase
    to the seconds it may last; ``evict`` lists the phases a connection
    may be evicted in, in order of preference; ``counters`` (a Counter)
    gets ``<name>_connections``, ``<name>_refused``, ``<name>_evicted``,
    ``<name>_timeouts``, ``<name>_accept_errors``, ``<name>_shed`` (and
    ``<name>_tls_failed``); ``log`` is a ratelog.PeerLog; ``tls`` an SSL
    context to serve TLS with, each handshake within ``tls_timeout``
    seconds (0: only the reaper's ``handshake`` timeout, if any)."""

    def __init__(self, sock, name, serve, phase, max_connections,
                 timeouts=None, evict=(IDLE,), counters=None, log=None,
                 close=close_conn, clock=time.monotonic, tls=None,
                 tls_timeout=10.0):
        self.sock = sock
        self.name = name
        self.serve = serve
        self._server_phase = phase
        self.max_connections = max(1, int(max_connections))
        self.timeouts = {k: v for k, v in (timeouts or {}).items() if v}
        self.tls = tls
        self.tls_timeout = tls_timeout
        if tls is not None:
            if tls_timeout:
                self.timeouts.setdefault(HANDSHAKE, tls_timeout)
            if HANDSHAKE not in evict:
                evict = (HANDSHAKE,) + tuple(evict)
        self.evict_phases = tuple(evict)
        self.counters = counters if counters is not None else {}
        self.log = log
        self.close = close
        self.clock = clock
        self.conns = set()
        self._reserve = None
        self._exhausted_since = None
        self._last_error = 0.0
        self._failed = 0

    @property
    def server(self):
        """The listening socket (the name hub.StreamServer gives it)."""
        return self.sock

    def closed(self):
        """Whether the listening socket is closed (the server stops)."""
        try:
            return self.sock.fileno() < 0
        except (OSError, ValueError, AttributeError):
            return True

    # -- the accept loop --

    def serve_forever(self):
        """Accept connections until the listening socket closes, each
        served in its own greenlet; failed accepts never end the loop."""
        self._take_reserve()
        hub.spawn(self._reaper)
        backoff = BACKOFF_MIN
        while True:
            try:
                client, addr = self.sock.accept()
            except OSError as exc:
                if exc.errno in GONE:
                    continue
                if self.closed():
                    return           # closed under us: stopping
                self._count('accept_errors')
                self._failed += 1
                self._last_error = self.clock()
                if exc.errno in EXHAUSTED:
                    self._starved(exc)
                elif self._exhausted_since is None:
                    self._note('accept on %s failed: %s; trying again',
                               self.name, exc)
                    self._exhausted_since = self._last_error
                hub.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_MIN
            self._maybe_recovered()
            self._accepted(client, addr)

    def _accepted(self, client, addr):
        if len(self.conns) >= self.max_connections and not self._evict():
            self._count('refused')
            self._note('%s: %d connections, all busy: refused one from %s',
                       self.name, len(self.conns), addr)
            client.close()
            return
        conn = Conn(client, addr, self.clock())
        self.conns.add(conn)
        self._count('connections')
        hub.spawn(self._run, conn)

    def phase(self, conn):
        """What ``conn`` is doing: in its TLS handshake, or what the
        server says."""
        if conn.handshaking:
            return HANDSHAKE, conn.accepted
        return self._server_phase(conn)

    def _handshake(self, conn):
        """The TLS handshake of ``conn``; whether it succeeded.  The
        connection's socket becomes the TLS one first, so that the reaper
        and eviction close the right thing."""
        conn.handshaking = True
        try:
            tls = self.tls.wrap_socket(conn.sock, server_side=True,
                                       do_handshake_on_connect=False)
            conn.sock = tls
            tls.settimeout(self.tls_timeout or None)
            tls.do_handshake()
            return True
        except (OSError, ValueError, AttributeError) as exc:
            # ssl.SSLError and timeouts are OSErrors; a socket shut down
            # under the handshake (the reaper) fails as it can.
            self._count('tls_failed')
            self._note('%s: TLS handshake with %s failed: %s', self.name,
                       conn.addr, exc)
            return False
        finally:
            conn.handshaking = False

    def _run(self, conn):
        try:
            if self.tls is not None and not self._handshake(conn):
                return
            self.serve(conn)
        except Exception as exc:  # pylint: disable=broad-except
            self._note('%s connection from %s failed: %s: %s', self.name,
                       conn.addr, type(exc).__name__, exc)
        finally:
            self.conns.discard(conn)
            try:
                conn.sock.close()
            except OSError:
                pass

    # -- out of descriptors --

    def _take_reserve(self):
        if self._reserve is None:
            try:
                self._reserve = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                self._reserve = None

    def _starved(self, exc):
        if self._exhausted_since is None:
            self._exhausted_since = self.clock()
            self._note('%s: cannot accept (%s): shedding connections and '
                       'backing off until descriptors are free', self.name,
                       exc.strerror or exc)
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
            # Without waiting: a green accept would sit until the next
            # connection came, and shed that one, long after.
            raw = getattr(self.sock, 'fd', self.sock)
            try:
                client, _ = raw.accept()
            except OSError:         # BlockingIOError: nobody waiting
                pass
            else:
                self._count('shed')
                client.close()
        self._evict(phases=(IDLE, HANDSHAKE))
        self._take_reserve()

    def _maybe_recovered(self):
        """One line when an episode of failed accepts is over."""
        if self._exhausted_since is None or \
                self.clock() - self._last_error < QUIET:
            return
        seconds = self._last_error - self._exhausted_since
        self._note('%s: accepting again after %d failed accepts in %.1f s',
                   self.name, self._failed, seconds)
        self._exhausted_since = None
        self._failed = 0

    # -- bounds --

    def _evict(self, phases=None):
        """Close the connection that has been in one of ``phases`` (the
        listener's own by default) the longest; True if there was one."""
        victim = pick_victim(self.conns, self.phase,
                             phases or self.evict_phases)
        if victim is None:
            return False
        self.conns.discard(victim)
        self._count('evicted')
        self.close(victim)
        return True

    def _reaper(self):
        while not self.closed():
            hub.sleep(REAP_INTERVAL)
            self.reap()
            self._maybe_recovered()

    def reap(self):
        """Close every connection past its phase's timeout."""
        now = self.clock()
        for conn in list(self.conns):
            phase, since = self.phase(conn)
            limit = self.timeouts.get(phase)
            if limit is not None and now - since > limit:
                self.conns.discard(conn)
                self._count('timeouts')
                self.close(conn)

    def _count(self, what):
        key = '%s_%s' % (self.name, what)
        self.counters[key] = self.counters.get(key, 0) + 1

    def _note(self, msg, *args):
        if self.log is not None:
            self.log.warning(msg, *args)
        else:
            LOG.warning(msg, *args)


def pick_victim(conns, phase, phases):
    """The connection in the earliest of ``phases`` (in order) that has
    been in it the longest, or None."""
    best = None
    for conn in conns:
        kind, since = phase(conn)
        if kind not in phases:
            continue
        rank = (phases.index(kind), since)
        if best is None or rank < best[0]:
            best = (rank, conn)
    return best[1] if best is not None else None


def server_context(certfile, keyfile, cafile=None, ciphers=None):
    """A TLS server context (TLS 1.2 at least) for :class:`Listener`:
    ``certfile`` and ``keyfile`` (PEM) say who this server is; with
    ``cafile`` a client must present a certificate that CA signed.  Green:
    its handshakes never block the hub."""
    import ssl
    from eventlet.green import ssl as green_ssl
    ctx = green_ssl.GreenSSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def listen(host, port, backlog=128):
    """A listening green socket (IPv4 or IPv6 by the address)."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    return hub.listen((host, port), family=family, backlog=backlog)


def raise_descriptor_limit(wanted):
    """Raise the soft limit on open files towards ``wanted`` (within the
    hard limit): the servers' bounds should be reached before the
    process runs out of descriptors."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
