"""nvo3ctl against a real HTTP server (wsgiref, ephemeral port) serving the
REST app: readable tables, error messages and exit codes."""

import io
import json
import socketserver
import threading
import time
from wsgiref import simple_server

import pytest

from nvo3_ryu_app.authority.commands import CreateVN
from nvo3_ryu_app.northbound import rest
from nvo3_ryu_app.cli import nvo3ctl
from rest_support import DP1, DP2, MAC1, MAC2, populated


class ThreadingServer(socketserver.ThreadingMixIn,
                      simple_server.WSGIServer):
    daemon_threads = True


class QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served():
    ctl, app, client = populated(notifier=rest.ThreadNotifier())
    server = simple_server.make_server('127.0.0.1', 0, app, ThreadingServer,
                                       QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                              daemon=True)
    thread.start()
    url = 'http://127.0.0.1:%d' % server.server_port
    yield ctl, url
    server.shutdown()
    server.server_close()


def run(url, *argv):
    out, err = io.StringIO(), io.StringIO()
    code = nvo3ctl.main(['--url', url] + list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def columns_line_up(text):
    """Every row starts its second column where the header does."""
    lines = text.strip('\n').split('\n')
    header = lines[0]
    second = header.index('  ') + len(header[header.index('  '):]) - len(
        header[header.index('  '):].lstrip())
    for line in lines[1:]:
        assert line[second - 2:second] == '  ' and line[second] != ' ', (
            header, line)
    return lines


def test_vns_table(served):
    _, url = served
    code, out, err = run(url, 'vns')
    assert (code, err) == (0, '')
    lines = columns_line_up(out)
    assert lines[0].split() == ['VNID', 'NAME', 'SERVICE', 'ENCAP',
                                'GATEWAY', 'NVES', 'TS', 'ORIGIN']
    assert lines[1].split()[:4] == ['5001', 'blue', 'l2', 'vxlan']
    assert '%s,%s' % (DP1, DP2) in lines[1]
    assert '02:00:00:00:fe:01 192.168.10.1/24' in lines[2]


def test_vn_members_and_mappings(served):
    _, url = served
    code, out, _ = run(url, 'vn', '6001')
    assert code == 0
    assert 'name            red' in out and 'service         l3' in out
    code, out, _ = run(url, 'members', '5001')
    lines = columns_line_up(out)
    assert lines[0].split() == ['NVE', 'VTEP', 'IP', 'TENANT', 'SYSTEMS']
    assert lines[1].split() == [DP1, '10.99.0.1', '1']
    code, out, _ = run(url, 'mappings', '5001')
    lines = columns_line_up(out)
    assert 'TUNNEL-IF-ID' in lines[0]
    assert MAC1 in lines[1] and 'vxlan0@10.99.0.1' in lines[1]
    assert MAC2 in lines[2]


def test_nves_and_nve(served):
    ctl, url = served
    code, out, _ = run(url, 'nves')
    lines = columns_line_up(out)
    assert len(lines) == 4
    assert lines[1].split()[:5] == [DP1, 'hv1', '10.99.0.1', 'yes', 'no']
    assert lines[3].split()[3] == 'no'       # hv3 is not connected
    ctl.ack()
    code, out, _ = run(url, 'nve', DP1)
    assert code == 0
    assert 'in_sync        yes' in out
    assert 'trunk0' in out and '10=5001,20=6001' in out


def test_lookup_and_tesid(served):
    _, url = served
    code, out, _ = run(url, 'lookup', '--ip', '192.168.1.2')
    assert code == 0 and MAC2 in out and MAC1 not in out
    code, out, _ = run(url, 'tesid', '5001', MAC1)
    assert (code, out.strip()) == (0, '<5001, %s, %s>' % (DP1, MAC1))


def test_writes(served):
    ctl, url = served
    code, out, _ = run(url, 'create-vn', '8001', 'green', '--encap', 'gre')
    assert code == 0 and 'green' in out and 'gre' in out
    code, out, _ = run(url, 'update-vn', '8001', '--name', 'lime')
    assert code == 0 and 'lime' in out
    code, out, _ = run(url, 'register-nve', '00000000000000aa',
                       '--vtep-ip', '10.0.0.170', '--name', 'hvA')
    assert code == 0 and '10.0.0.170' in out
    code, out, _ = run(url, 'bind', '00000000000000aa', 'tap1',
                       '--vnid', '8001')
    assert code == 0 and '8001' in out
    code, out, _ = run(url, 'bind', '00000000000000aa', 'trunk0',
                       '--vlan', '10=8001', '--vlan', '20=5001')
    assert code == 0 and '10=8001,20=5001' in out
    assert ctl.authority.db.nves[0xaa].bindings['trunk0'].vlans == {
        10: 8001, 20: 5001}
    code, out, _ = run(url, 'unbind', '00000000000000aa', 'tap1')
    assert (code, out.strip()) == (
        0, 'unbound port tap1 of NVE 00000000000000aa')
    code, out, _ = run(url, 'delete-vn', '8001')
    assert (code, out.strip()) == (0, 'deleted VN 8001')
    assert 8001 not in ctl.authority.db.vns


@pytest.mark.parametrize('argv, status, words', [
    (['create-vn', '5001', 'again'], '409 conflict', 'field vnid'),
    (['create-vn', '8001', 'blue'], '409 conflict', 'field name'),
    (['vn', '4242'], '404 not-found', 'no VN 4242'),
    (['vn', '0'], '400 bad-request', 'field vnid'),
    (['vn', '16777216'], '400 bad-request', '24 bits'),
    (['nve', '00000000000000ff'], '404 not-found', 'field dpid'),
    (['bind', DP1, 'tap2', '--vnid', '4242'], '404 not-found', 'no VN'),
    (['unbind', DP1, 'tap9'], '404 not-found', 'field port_name'),
    (['register-nve', DP2, '--vtep-ip', '10.99.0.1'], '409 conflict',
     'field vtep_ip'),
    (['tesid', '5001', 'nonsense'], '400 bad-request', 'field mac'),
    # one path segment: it cannot reach another resource (/v1/nves)
    (['vn', '../nves'], '404 not-found', 'no such resource'),
])
def test_api_errors_exit_1_with_the_message(served, argv, status, words):
    _, url = served
    code, out, err = run(url, *argv)
    assert code == 1 and out == ''
    assert err.startswith('error: ' + status)
    assert words in err


def test_usage_errors_exit_2(served):
    _, url = served
    assert run(url, 'bind', DP1, 'tap2')[0] == 2
    assert run(url, 'bind', DP1, 'tap2', '--vlan', '10')[0] == 2
    assert run(url)[0] == 2
    assert run(url, 'frobnicate')[0] == 2


def test_unreachable_app_exits_3():
    code, out, err = run('http://127.0.0.1:9', 'vns')
    assert code == 3 and out == ''
    assert err.startswith('error: cannot reach http://127.0.0.1:9')


def test_json_output(served):
    _, url = served
    code, out, _ = run(url, '--json', 'vns')
    assert code == 0
    assert [v['vnid'] for v in json.loads(out)] == [5001, 6001, 7001]


def test_sync(served):
    ctl, url = served
    code, out, _ = run(url, 'sync')
    assert code == 0 and out.startswith('NOT in sync')
    code, _, err = run(url, 'sync', '--wait', '0.3')
    assert code == 1 and 'not in sync' in err.lower()
    threading.Timer(0.3, ctl.ack).start()
    code, out, _ = run(url, 'sync', '--wait', '5')
    assert code == 0 and out.startswith('in sync')


def test_events_table(served):
    ctl, url = served
    code, out, _ = run(url, 'events', '--type', 'attach')
    lines = columns_line_up(out)
    assert lines[0].split() == ['SEQ', 'TIME', 'TYPE', 'DETAILS']
    assert len(lines) == 4
    assert all(line.split()[2] == 'attach' for line in lines[1:])
    assert 'mac=%s' % MAC1 in lines[1]


def test_events_follow_prints_events_as_they_happen(served):
    ctl, url = served
    seq = ctl.authority.event_log.seq

    def changes():
        time.sleep(0.3)
        ctl.execute(CreateVN(8001, 'green'))
        time.sleep(0.3)
        ctl.execute(CreateVN(8002, 'lime'))

    threading.Thread(target=changes, daemon=True).start()
    started = time.monotonic()
    code, out, _ = run(url, 'events', '--follow', '--since', str(seq),
                       '--count', '2', '--wait', '5')
    assert code == 0
    assert 0.5 < time.monotonic() - started < 5
    lines = out.strip().split('\n')
    assert lines[0].split() == ['SEQ', 'TIME', 'TYPE', 'DETAILS']
    assert [line.split()[0] for line in lines[1:]] == [str(seq + 1),
                                                       str(seq + 2)]
    assert 'vnid=8001 name=green' in lines[1]
    assert lines[1].index('vn-created') == lines[0].index('TYPE')


def test_evpn_of_a_vn_and_bgp(served):
    ctl, url = served
    code, out, _ = run(url, 'create-vn', '8002', 'teal', '--evpn',
                       '--route-target', '65001:82')
    assert code == 0
    vn = ctl.authority.db.vns[8002]
    assert (vn.evpn, vn.route_targets) == (True, ('65001:82',))
    code, out, _ = run(url, 'update-vn', '8002', '--no-evpn')
    assert code == 0 and ctl.authority.db.vns[8002].evpn is False
    # Without bgp_as there is no speaker to show.
    code, out, err = run(url, 'bgp')
    assert code == 1 and err.startswith('error: 404 not-found')
    ctl.bgp_status = lambda: {
        'as': 65001, 'router_id': '10.0.0.254',
        'neighbors': [{'address': '127.0.0.2', 'remote_as': 65002,
                       'state': 'Established', 'router_id': '10.0.0.2'}],
        'routes': {'exported': 3, 'imported': 2}}
    code, out, _ = run(url, 'bgp')
    assert code == 0 and 'AS 65001' in out and 'exported 3' in out
    assert '127.0.0.2' in out and 'Established' in out
