"""The app's switch queue (app.py): os-ken's events about switches and the
messages rawpath.py decoded are handled in the order the switches sent
them (a packet-in never overtakes its switch's earlier port status), one
wake-up in os-ken's queue stands for all of them, a handling turn takes
what waited when it began, and receive loops wait for room beyond the
bound while the event loop never does.

The app object is made without os-ken (its queue and semaphore are the
hub's own, as os-ken makes them); handlers are recorded, not run.
"""

import greenlet
import pytest
from os_ken.controller import ofp_event
from os_ken.lib import hub

from nvo3_ryu_app import app as app_mod
from nvo3_ryu_app.southbound import rawpath


class Msg:
    def __init__(self, name):
        self.name = name
        self.datapath = None


@pytest.fixture
def shim():
    nvo3 = object.__new__(app_mod.NVO3App)
    nvo3.events = hub.Queue(128)
    nvo3._events_sem = hub.BoundedSemaphore(128)
    nvo3._switch_q = app_mod.collections.deque()
    nvo3._switch_wake = False
    nvo3._switch_room = hub.Event()
    nvo3._switch_waiters = 0
    nvo3._loop_greenlet = greenlet.getcurrent()
    nvo3.is_active = True
    seen = []
    nvo3._raw_handlers = {
        rawpath.PacketIn: lambda dp, m: seen.append(('packet-in', dp, m.xid)),
        rawpath.BarrierReply: lambda dp, m: seen.append(('barrier', dp,
                                                         m.xid))}
    nvo3.get_handlers = lambda ev, state: [
        lambda e: seen.append(('os-ken', e.msg.name, state))]
    nvo3.seen = seen
    return nvo3


def packet_in(xid):
    return rawpath.PacketIn(xid, 0, 0, 1, 0, 0, b'')


def posted(nvo3):
    """What waits in os-ken's queue, taken out."""
    out = []
    while not nvo3.events.empty():
        out.append(nvo3.events.get())
        nvo3._events_sem.release()
    return out


def run_turn(nvo3):
    """One handling turn, as os-ken's loop runs it."""
    (ev, _), = posted(nvo3)
    assert isinstance(ev, app_mod.EventSwitchMessages)
    nvo3._switch_messages(ev)


def test_switch_messages_keep_their_order_behind_one_wakeup(shim):
    hub.spawn(lambda: (
        shim._raw('dp1', packet_in(1)),
        shim._send_event(ofp_event.EventOFPPortStatus(Msg('port 3 up')),
                         'main'),
        shim._raw('dp1', packet_in(2)),
        shim._raw('dp1', rawpath.BarrierReply(3)))).wait()
    run_turn(shim)
    assert shim.seen == [('packet-in', 'dp1', 1),
                         ('os-ken', 'port 3 up', 'main'),
                         ('packet-in', 'dp1', 2), ('barrier', 'dp1', 3)]
    assert not shim._switch_wake and posted(shim) == []


def test_other_events_use_os_kens_queue(shim):
    tick = app_mod.EventTick()
    shim._send_event(tick, None)
    assert posted(shim) == [(tick, None)] and not shim._switch_q


def test_a_turn_takes_what_waited_when_it_began(shim):
    hub.spawn(shim._raw, 'dp1', packet_in(1)).wait()
    ev, _ = posted(shim)[0]
    shim._raw_handlers[rawpath.PacketIn] = lambda dp, m: (
        shim.seen.append(m.xid),
        # arrives while the turn runs (a drain lets receive loops run)
        m.xid < 3 and shim._switch_q.append((True, 'dp1',
                                             packet_in(m.xid + 1))))
    shim._switch_messages(ev)
    assert shim.seen == [1] and len(shim._switch_q) == 1
    hub.sleep(0)                 # the loop posts its wake-up from aside
    run_turn(shim)
    assert shim.seen == [1, 2]
    hub.sleep(0)
    run_turn(shim)
    assert shim.seen == [1, 2, 3] and not shim._switch_wake


def test_receive_loops_wait_for_room_the_loop_never(shim, monkeypatch):
    monkeypatch.setattr(app_mod, 'SWITCH_QUEUE_MAX', 4)
    for xid in range(4):
        shim._raw('dp1', packet_in(xid))       # the loop itself: no wait
    shim._raw('dp1', packet_in(4))
    assert len(shim._switch_q) == 5
    done = []
    receiver = hub.spawn(lambda: (shim._raw('dp2', packet_in(9)),
                                  done.append(True)))
    hub.sleep(0)
    assert not done and shim._switch_waiters == 1
    posted(shim)
    shim._switch_messages(None)   # down to half the bound: room again
    receiver.wait()
    assert done and [s[2] for s in shim.seen] == [0, 1, 2, 3, 4]
    assert list(shim._switch_q) == [(True, 'dp2', packet_in(9))]


def test_a_stopping_app_drops_the_queue_and_frees_the_receive_loops(
        shim, monkeypatch):
    # os-ken's loop handles every queued event before it ends: a switch
    # storm refilling the queue held SIGINT for seconds.
    monkeypatch.setattr(app_mod, 'SWITCH_QUEUE_MAX', 4)
    for xid in range(5):
        shim._raw('dp1', packet_in(xid))
    done = []
    receiver = hub.spawn(lambda: (shim._raw('dp2', packet_in(9)),
                                  done.append(True)))
    hub.sleep(0)
    assert not done and shim._switch_waiters == 1
    shim.is_active = False                  # os-ken's stop()
    run_turn(shim)
    receiver.wait()
    assert done and shim.seen == [] and not shim._switch_q
    assert not shim._switch_wake and posted(shim) == []
    shim._raw('dp1', packet_in(10))         # after the stop: not queued
    assert not shim._switch_q and posted(shim) == []
