"""The prober's analysis on synthetic results (no namespace, no socket)."""

import json
import os
import subprocess
import sys

import pytest

from nvo3_ryu_app.testbed import prober

T0 = 1000.0
IV = 0.01


def synthetic(n, lost=(), rtt=0.5, late=None):
    """n probes on a perfect 10 ms schedule; ``lost`` indexes get no reply;
    ``late`` maps an index to its rtt in ms."""
    late = late or {}
    probes = []
    for i in range(n):
        gone = i in lost
        probes.append({'seq': i, 'sent': T0 + i * IV,
                       'rtt_ms': None if gone else late.get(i, rtt),
                       'lost': gone})
    return {'version': 1, 'dst': '192.0.2.1', 'interval': IV,
            'started': T0, 'probes': probes}


def test_no_loss_no_outage():
    res = synthetic(100)
    assert prober.outages(res) == []
    s = prober.summary(res)
    assert (s['sent'], s['received'], s['lost'], s['longest_gap_ms'],
            s['outages']) == (100, 100, 0, 0.0, 0)
    assert s['rtt_p50_ms'] == 0.5 and s['send_lag_max_ms'] == 0.0


def test_runs_of_losses_become_outages():
    res = synthetic(100, lost=set(range(10, 13)) | {40} | set(range(60, 75)))
    got = prober.outages(res)
    assert [(round(s, 6), round(e, 6), n, d) for s, e, n, d in got] == [
        (T0 + 0.10, T0 + 0.13, 3, 30.0),
        (T0 + 0.40, T0 + 0.41, 1, 10.0),
        (T0 + 0.60, T0 + 0.75, 15, 150.0)]
    s = prober.summary(res)
    assert (s['sent'], s['received'], s['lost'], s['outages']) == (
        100, 81, 19, 3)
    assert s['longest_gap_ms'] == 150.0


def test_an_outage_at_the_end_has_no_end():
    res = synthetic(20, lost=range(15, 20))
    assert prober.outages(res) == [(T0 + 0.15, None, 5, 50.0)]


def test_an_outage_at_the_start():
    res = synthetic(20, lost=range(0, 4))
    (start, end, n, dur), = prober.outages(res)
    assert (start, n, dur) == (T0, 4, 40.0) and end == pytest.approx(T0 + 0.04)


def test_slow_replies_count_as_lost_when_asked():
    res = synthetic(20, late={5: 250.0, 6: 240.0})
    assert prober.outages(res) == []
    (_, _, n, dur), = prober.outages(res, max_rtt_ms=100)
    assert (n, dur) == (2, 20.0)
    assert prober.summary(res, max_rtt_ms=100)['lost'] == 2


def test_a_bare_probe_list_needs_the_interval():
    res = synthetic(10, lost={3})
    with pytest.raises(ValueError):
        prober.outages(res['probes'])
    assert prober.outages(res['probes'], IV)[0][2] == 1
    # Order of the list does not matter.
    assert prober.outages(list(reversed(res['probes'])), IV)[0][2] == 1


def test_a_late_schedule_shows_as_send_lag():
    res = synthetic(10)
    res['probes'][5]['sent'] += 0.004
    assert prober.summary(res)['send_lag_max_ms'] == pytest.approx(4.0)


def test_the_echo_request_checksum_verifies():
    pkt = prober._echo_request(0x1234, 70000, 56)
    assert prober._checksum(pkt) == 0
    assert pkt[6:8] == (70000 & 0xFFFF).to_bytes(2, 'big')
    # A reply carries the payload back: the full index survives the wrap.
    reply = bytes([0x45]) + bytes(19) + bytes([0, 0]) + pkt[2:]
    assert prober._parse_reply(reply, 0x1234) == (70000, 70000 & 0xFFFF)
    assert prober._parse_reply(reply, 0x1235) is None


def test_runs_as_a_script_without_the_project():
    """Debian's python runs the file by path (no package on sys.path)."""
    here = os.path.dirname(prober.__file__)
    out = subprocess.run([sys.executable, '-I', os.path.join(here, 'prober.py'),
                          '--help'], capture_output=True, text=True,
                         cwd='/', timeout=30)
    assert out.returncode == 0 and '--interval' in out.stdout, out.stderr


def test_results_round_trip_through_json(tmp_path):
    res = synthetic(30, lost={7, 8})
    path = tmp_path / 'r.json'
    path.write_text(json.dumps(res))
    again = prober.load(str(path))
    assert prober.outages(again) == prober.outages(res)


def test_a_realtime_prober_runs_under_chrt_when_the_kernel_allows(monkeypatch):
    plain = prober.command(42, '192.0.2.1', '/tmp/p.json', interval=0.001,
                           duration=2.0)
    assert plain[:3] == ['mnexec', '-a', '42'] and 'chrt' not in plain
    monkeypatch.setattr(prober, '_RT_ALLOWED', [True])
    rt = prober.command(42, '192.0.2.1', '/tmp/p.json', interval=0.001,
                        duration=2.0, realtime=True)
    assert rt[3:6] == ['chrt', '-f', '10'] and rt[6:] == plain[3:]
    # Where real-time scheduling is refused it runs as before.
    monkeypatch.setattr(prober, '_RT_ALLOWED', [False])
    assert prober.command(42, '192.0.2.1', '/tmp/p.json', interval=0.001,
                          duration=2.0, realtime=True) == plain
