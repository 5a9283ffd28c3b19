"""listener: an accept loop that survives running out of descriptors, and
bounded, timed-out connections.

The loop runs in this process's eventlet hub on a stand-in listening
socket whose accept() follows a script (EMFILE, an unexpected error,
connections), so the errors happen exactly when the test says."""

import errno
import time

import eventlet
import pytest

from nvo3_ryu_app.runtime import listener
from nvo3_ryu_app.runtime.listener import BUSY, HANDSHAKE, IDLE, READING


class FakeClient:
    def __init__(self, n):
        self.n = n
        self.closed = False
        self.shut = False

    def close(self):
        self.closed = True

    def shutdown(self, how):
        self.shut = True


class ScriptedSocket:
    """accept() does what ``script`` says, then the socket is closed."""

    def __init__(self, script):
        self.script = list(script)
        self.done = False
        self.clients = []
        self.later = 0.0             # 'late': 10 s pass before it

    def clock(self):
        return time.monotonic() + self.later

    def accept(self):
        if not self.script:
            self.done = True
            raise OSError(errno.EBADF, 'closed')
        item = self.script.pop(0)
        if isinstance(item, int):
            raise OSError(item, 'scripted error')
        if item == 'late':
            self.later += 10.0
        client = FakeClient(len(self.clients))
        self.clients.append(client)
        return client, ('127.0.0.1', 40000 + client.n)

    def fileno(self):
        return -1 if self.done else 99


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, msg, *args):
        self.lines.append(msg % args)


def run(sock, serve=None, phase=None, **kwargs):
    log, counters = Log(), {}
    lst = listener.Listener(sock, 'test', serve or (lambda conn: None),
                            phase or (lambda conn: (BUSY, 0.0)),
                            counters=counters, log=log, clock=sock.clock,
                            **kwargs)
    thread = eventlet.spawn(lst.serve_forever)
    with eventlet.Timeout(10):
        while not sock.done:
            eventlet.sleep(0.01)
    thread.wait()
    eventlet.sleep(0.01)            # the connections' own green threads
    return lst, counters, log


def test_running_out_of_descriptors_is_survived_and_logged_once():
    # After each failure the loop gives up its reserve descriptor to take
    # the waiting connection and close it ('shed'; the second time that
    # fails too), then backs off.  It is over once no accept failed for a
    # while: accepts succeed in between while it sheds.
    sock = ScriptedSocket(['c', errno.EMFILE, 'shed', errno.EMFILE,
                           errno.EMFILE, 'c', errno.ENFILE, 'shed', 'late',
                           'c'])
    served = []
    _, counters, log = run(sock, serve=served.append, max_connections=10)
    # Every failure counted; the loop went on to serve the last two.
    assert counters['test_accept_errors'] == 3
    assert counters['test_shed'] == 2        # told at once, not left hanging
    assert sock.clients[1].closed and sock.clients[3].closed
    assert [c.sock.n for c in served] == [0, 2, 4, 5]
    starts = [line for line in log.lines if 'cannot accept' in line]
    ends = [line for line in log.lines if 'accepting again' in line]
    assert len(starts) == 1 and len(ends) == 1, log.lines
    assert '3 failed accepts' in ends[0]


def test_an_unexpected_accept_error_is_not_the_end():
    sock = ScriptedSocket([errno.EINVAL, errno.EINVAL, 'c'])
    served = []
    _, counters, _ = run(sock, serve=served.append, max_connections=10)
    assert counters['test_accept_errors'] == 2 and len(served) == 1


def test_a_full_listener_evicts_the_longest_idle_then_refuses():
    phases = {}
    gate = eventlet.event.Event()

    def serve(conn):
        phases.setdefault(conn.sock.n, (BUSY, 0.0))
        gate.wait()

    def phase(conn):
        return phases[conn.sock.n]

    sock = ScriptedSocket(['c', 'c', 'c'])
    log, counters = Log(), {}
    lst = listener.Listener(sock, 'test', serve, phase, max_connections=3,
                            evict=(IDLE, READING), counters=counters,
                            log=log)
    thread = eventlet.spawn(lst.serve_forever)
    with eventlet.Timeout(10):
        while not sock.done:
            eventlet.sleep(0.01)
    assert len(lst.conns) == 3
    phases.update({0: (READING, 5.0), 1: (IDLE, 20.0), 2: (IDLE, 10.0)})
    # A fourth connection: conn 2 has been idle the longest.
    lst._accepted(FakeClient(3), ('127.0.0.1', 1))
    eventlet.sleep(0)
    assert sock.clients[2].shut and not sock.clients[1].shut
    assert counters['test_evicted'] == 1
    phases[3] = (BUSY, 0.0)
    # Then the one reading for the longest... then none is left: refused.
    lst._accepted(FakeClient(4), ('127.0.0.1', 2))
    eventlet.sleep(0)
    phases[4] = (BUSY, 0.0)
    assert sock.clients[1].shut and counters['test_evicted'] == 2
    lst._accepted(FakeClient(5), ('127.0.0.1', 3))
    eventlet.sleep(0)
    phases[5] = (BUSY, 0.0)
    assert sock.clients[0].shut and counters['test_evicted'] == 3
    refused = FakeClient(6)
    lst._accepted(refused, ('127.0.0.1', 4))
    assert refused.closed and counters['test_refused'] == 1
    gate.send()
    thread.wait()


def test_pick_victim_prefers_the_first_phase_then_the_oldest():
    conns = {'a': (BUSY, 1.0), 'b': (READING, 2.0), 'c': (IDLE, 9.0),
             'd': (IDLE, 3.0), 'e': (HANDSHAKE, 0.0)}
    phase = conns.get
    assert listener.pick_victim(conns, phase, (IDLE, READING)) == 'd'
    assert listener.pick_victim(conns, phase, (READING,)) == 'b'
    assert listener.pick_victim(conns, phase, (HANDSHAKE,)) == 'e'
    assert listener.pick_victim({'a': (BUSY, 0.0)}, phase, (IDLE,)) is None


@pytest.mark.parametrize('phase,since,closed', [
    (IDLE, 100.0, False), (IDLE, 89.0, True), (READING, 97.0, False),
    (READING, 94.0, True), (BUSY, 0.0, False)])
def test_reap_closes_what_outlived_its_phase(phase, since, closed):
    clock = {'now': 100.0}
    shut = []
    lst = listener.Listener(ScriptedSocket([]), 'test', None,
                            lambda conn: (phase, since), 10,
                            timeouts={IDLE: 10.0, READING: 5.0},
                            close=shut.append, clock=lambda: clock['now'],
                            counters={})
    conn = listener.Conn(FakeClient(0), None, 0.0)
    lst.conns.add(conn)
    lst.reap()
    assert (shut == [conn]) == closed
    assert (conn in lst.conns) != closed


class NothingWaiting:
    """The non-blocking socket under a green one: nobody in the backlog."""

    @staticmethod
    def accept():
        raise BlockingIOError(errno.EAGAIN, 'nothing waiting')


def test_shedding_never_waits_for_the_next_connection():
    """Out of descriptors with an empty backlog, the loop must not sit in
    accept() and then shed whoever connects next (a client that came
    after the descriptors were back)."""
    sock = ScriptedSocket([errno.EMFILE, 'late', 'c'])
    sock.fd = NothingWaiting()
    served = []
    _, counters, _ = run(sock, serve=served.append, max_connections=10)
    assert [c.sock.n for c in served] == [0, 1]
    assert counters.get('test_shed', 0) == 0
