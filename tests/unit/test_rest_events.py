"""GET /v1/events long-polls and GET /v1/events/stream (server-sent events).

Under osken-manager requests run in eventlet green threads; these tests run
the WSGI app the same way (the default HubNotifier, os_ken.lib.hub
green threads as producers), so "waits without blocking the event loop"
is tested as it runs.  ThreadNotifier, for OS-thread servers, is tested
with a real thread.
"""

import json
import threading
import time

from os_ken.lib import hub

from nvo3_ryu_app.authority.commands import BindPort, CreateVN
from nvo3_ryu_app.northbound import rest
from rest_support import populated


def later(seconds, func, *args):
    return hub.spawn_after(seconds, func, *args)


def create_vn(ctl, vnid, name):
    ctl.execute(CreateVN(vnid, name))


def test_long_poll_returns_as_soon_as_an_event_is_recorded():
    ctl, _, client = populated()
    seq = ctl.authority.event_log.seq
    later(0.2, create_vn, ctl, 8001, 'green')
    started = time.monotonic()
    page = client.ok('GET', '/v1/events?since=%d&wait=10' % seq)
    took = time.monotonic() - started
    assert 0.15 < took < 3
    assert [e['type'] for e in page['events']] == ['vn-created']
    assert page['events'][0]['vnid'] == 8001
    assert page['next_since'] == page['seq'] == seq + 1


def test_long_poll_times_out_empty():
    ctl, _, client = populated()
    seq = ctl.authority.event_log.seq
    started = time.monotonic()
    page = client.ok('GET', '/v1/events?since=%d&wait=0.3' % seq)
    assert time.monotonic() - started >= 0.29
    assert page == {'events': [], 'next_since': seq, 'seq': seq,
                    'more': False}


def test_long_poll_without_wait_returns_at_once():
    ctl, _, client = populated()
    seq = ctl.authority.event_log.seq
    started = time.monotonic()
    assert client.ok('GET', '/v1/events?since=%d' % seq)['events'] == []
    assert time.monotonic() - started < 0.2


def test_long_poll_with_type_waits_for_a_matching_event():
    ctl, _, client = populated()
    seq = ctl.authority.event_log.seq
    later(0.1, create_vn, ctl, 8001, 'green')
    later(0.2, ctl.execute, BindPort(2, 'tap2', 8001))
    later(0.3, ctl.learn, 2, 'tap2', '02:00:00:00:00:42')
    page = client.ok('GET', '/v1/events?since=%d&wait=10&type=attach' % seq)
    assert [e['type'] for e in page['events']] == ['attach']
    assert page['events'][0]['mac'] == '02:00:00:00:00:42'
    # next_since skips the vn-created event the filter left out.
    assert page['next_since'] == ctl.authority.event_log.seq


def test_waiting_request_does_not_block_other_requests():
    """A long-poll parks its own green thread; others are served."""
    ctl, app, client = populated()
    seq = ctl.authority.event_log.seq
    result = {}

    def poll():
        result['page'] = client.ok('GET', '/v1/events?since=%d&wait=5' % seq)
        result['at'] = time.monotonic()

    waiter = hub.spawn(poll)
    hub.sleep(0.05)                       # the poll is now waiting
    started = time.monotonic()
    assert [v['vnid'] for v in client.ok('GET', '/v1/vns')][:1] == [5001]
    client.ok('POST', '/v1/vns', {'vnid': 8001, 'name': 'green'})
    assert time.monotonic() - started < 1
    hub.joinall([waiter])
    assert result['at'] - started < 1
    assert [e['vnid'] for e in result['page']['events']] == [8001]


def test_thread_notifier_wakes_a_thread_server():
    ctl, _, client = populated(notifier=rest.ThreadNotifier())
    seq = ctl.authority.event_log.seq
    timer = threading.Timer(0.2, create_vn, (ctl, 8001, 'green'))
    timer.start()
    started = time.monotonic()
    page = client.ok('GET', '/v1/events?since=%d&wait=10' % seq)
    timer.join()
    assert time.monotonic() - started < 3
    assert [e['vnid'] for e in page['events']] == [8001]


# --- server-sent events -----------------------------------------------------

def parse_sse(body):
    messages = []
    for block in body.decode().split('\n\n'):
        fields = {}
        for line in block.splitlines():
            if line.startswith(':') or not line:
                continue
            key, _, value = line.partition(': ')
            fields[key] = value
        if 'data' in fields:
            messages.append(fields)
    return messages


def test_stream_sends_backlog_then_live_events_then_ends():
    ctl, _, client = populated()
    seq = ctl.authority.event_log.seq
    later(0.2, create_vn, ctl, 8001, 'green')
    started = time.monotonic()
    code, body, resp = client.call(
        'GET', '/v1/events/stream?since=%d&timeout=0.6' % (seq - 2))
    took = time.monotonic() - started
    assert code == 200
    assert resp.content_type == 'text/event-stream'
    assert resp.headers['Cache-Control'] == 'no-cache'
    assert 0.55 < took < 3
    assert body.startswith(b'retry: ')
    messages = parse_sse(body)
    assert [int(m['id']) for m in messages] == [seq - 1, seq, seq + 1]
    last = messages[-1]
    assert last['event'] == 'vn-created'
    assert json.loads(last['data'])['vnid'] == 8001


def test_stream_default_starts_at_now_and_filters_types():
    ctl, _, client = populated()
    later(0.1, create_vn, ctl, 8001, 'green')
    later(0.2, ctl.authority.switch_disconnected, 2, 1.0)
    code, body, _ = client.call(
        'GET', '/v1/events/stream?timeout=0.5&type=nve-down')
    messages = parse_sse(body)
    assert [m['event'] for m in messages] == ['nve-down']
    assert json.loads(messages[0]['data'])['nve'] == '0000000000000002'


def test_stream_resumes_after_last_event_id():
    ctl, _, client = populated()
    seq = ctl.authority.event_log.seq
    code, body, _ = client.call('GET', '/v1/events/stream?timeout=0',
                                headers={'Last-Event-ID': str(seq - 1)})
    assert [int(m['id']) for m in parse_sse(body)] == [seq]


def test_stream_sends_keepalives(monkeypatch):
    monkeypatch.setattr(rest.events, 'KEEPALIVE', 0.1)
    _, _, client = populated()
    _, body, _ = client.call('GET', '/v1/events/stream?timeout=0.35')
    assert body.count(b': keepalive\n\n') >= 2


def test_events_carry_timestamps_from_the_controller_clock():
    ctl, _, client = populated()
    ctl.clock = 4242.5
    client.ok('POST', '/v1/vns', {'vnid': 8001, 'name': 'green'})
    last = client.ok('GET', '/v1/events?limit=1')['events'][0]
    assert (last['type'], last['time']) == ('vn-created', 4242.5)
