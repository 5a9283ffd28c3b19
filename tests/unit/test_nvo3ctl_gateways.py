"""nvo3ctl's interconnection commands against the REST app over HTTP:
gateways, interconnects and external networks, and their errors."""

import json

from rest_support import DP1, MAC1, MAC2
from test_nvo3ctl import run, served  # noqa: F401 (the fixture)

GW = '00000000000000ff'


def test_gateway_interconnects_and_externals_from_the_shell(served):
    _, url = served
    code, out, _ = run(url, 'register-nve', GW, '--vtep-ip', '10.99.0.255',
                       '--role', 'gateway')
    assert code == 0 and 'gateway' in out
    code, out, err = run(url, 'put-interconnect', 'blue-spare', '--gateway',
                         GW, '--vn', '5001', '--vn', '7001', '--allow', MAC1,
                         '--allow', MAC2)
    assert code == 0, err
    assert 'l2+l2' in out and MAC1 in out
    code, out, err = run(url, 'put-interconnect', 'blue-red', '--gateway',
                         GW, '--vn', '5001', '--vn', '6001', '--router',
                         '5001=192.168.1.254/24,02:00:00:00:fe:51')
    assert code == 0, err
    code, out, _ = run(url, 'interconnects')
    lines = out.strip().split('\n')
    assert lines[0].split()[:4] == ['NAME', 'GATEWAY', 'VNS', 'KIND']
    assert [line.split()[0] for line in lines[1:]] == ['blue-red',
                                                       'blue-spare']
    assert '5001:192.168.1.254/24,02:00:00:00:fe:51' in out
    code, out, _ = run(url, 'interconnect', 'blue-red')
    assert 'kind' in out and 'l2+l3' in out and 'frames' in out
    code, out, err = run(url, 'put-external', 'lab', '--gateway', GW,
                         '--port', 'ext0', '--vlan', '100=5001', '--allow',
                         MAC1)
    assert code == 0, err
    code, out, _ = run(url, '--json', 'external', 'lab')
    assert json.loads(out)['vlans'] == {'100': 5001}
    code, out, _ = run(url, 'externals')
    assert 'lab' in out and 'ext0' in out
    assert run(url, 'delete-external', 'lab')[0] == 0
    assert run(url, 'delete-interconnect', 'blue-red')[0] == 0
    code, out, _ = run(url, '--json', 'interconnects')
    assert [i['name'] for i in json.loads(out)] == ['blue-spare']


def test_refusals_say_what_was_wrong(served):
    _, url = served
    code, _, err = run(url, 'put-interconnect', 'x', '--gateway', DP1,
                       '--vn', '5001', '--vn', '7001')
    assert code == 1 and '409 conflict' in err and 'not a gateway' in err
    code, _, err = run(url, 'put-interconnect', 'x', '--gateway', DP1,
                       '--vn', '5001')
    assert code == 2 and 'twice' in err
    code, _, err = run(url, 'put-external', 'x', '--gateway', DP1,
                       '--port', 'e0')
    assert code == 2
    code, _, err = run(url, 'interconnect', 'nope')
    assert code == 1 and '404' in err


def test_interconnect_writes_have_a_dry_run(served):
    """--dry-run on an interconnect's PUT and DELETE says what would happen
    and leaves the interconnects as they were."""
    _, url = served
    run(url, 'register-nve', GW, '--vtep-ip', '10.99.0.255', '--role',
        'gateway')
    code, out, err = run(url, 'put-interconnect', 'blue-red', '--gateway',
                         GW, '--vn', '5001', '--vn', '6001', '--router',
                         '5001=192.168.1.254/24,02:00:00:00:fe:51',
                         '--dry-run')
    assert code == 0, err
    assert 'dry run of PutInterconnect: nothing was changed' in out
    assert 'interconnect-created' in out
    assert json.loads(run(url, '--json', 'interconnects')[1]) == []
    run(url, 'put-interconnect', 'blue-red', '--gateway', GW, '--vn', '5001',
        '--vn', '6001', '--router', '5001=192.168.1.254/24,02:00:00:00:fe:51')
    code, out, err = run(url, 'delete-interconnect', 'blue-red', '--dry-run')
    assert code == 0, err
    assert 'interconnect-deleted' in out
    assert [ic['name'] for ic in json.loads(
        run(url, '--json', 'interconnects')[1])] == ['blue-red']
