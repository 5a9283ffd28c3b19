"""The registration RPC's ``migrate`` and ``cancel_migration``, and
``nvo3-register migrate`` / ``cancel-migration`` (the server and fixtures
of test_registration.py)."""

import pytest

from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.northbound import auth as A
from nvo3_ryu_app.northbound import registration
from test_auth import rpc_ctl  # noqa: F401 (a fixture)
from test_registration import (MAC, NVE1, client, ctl, rpc_error,  # noqa
                               run_cli, running, server, state)

NVE2 = '0000000000000002'


@pytest.fixture
def known(ctl):  # noqa: F811 (the fixture of test_registration)
    """MAC learned at NVE1 p3 (VLAN 10: VN 40); NVE2's p1 carries VN 40."""
    ctl.authority.db.learn(1, 'p3', 10, MAC, None, ctl.now())
    ctl.authority.commit(ctl.now())
    ctl.execute(C.BindPort(2, 'p1', vnid=40))
    return ctl


def test_migrate_and_cancel_over_rpc(known, server):  # noqa: F811
    _, addr = server
    cl = client(addr)
    result = cl.call('migrate', [{'nve': NVE2, 'port': 'p1', 'mac': MAC,
                                  'vnid': 40}])
    assert result['action'] == 'started'
    assert result['from'] == {'nve': NVE1, 'port': 'p3', 'vlan': 10}
    assert result['to'] == {'nve': NVE2, 'port': 'p1', 'vlan': None}
    auth = known.authority
    stored = auth.store.load()[('att', (40, MAC))]
    assert stored['migration']['nve'] == 2          # durable before reply
    assert auth.counters['rpc_requests_migrate_ok'] == 1
    again = cl.call('migrate', [{'nve': 2, 'port': 'p1', 'mac': MAC,
                                 'vnid': 40}])
    assert again['action'] == 'renewed'
    gone = cl.call('cancel_migration', [{'vnid': 40, 'mac': MAC}])
    assert gone['action'] == 'cancelled' and gone['to']['nve'] == NVE2
    assert 'migration' not in auth.store.load()[('att', (40, MAC))]


@pytest.mark.parametrize('params,code,field', [
    ({'nve': NVE2, 'port': 'p1', 'mac': MAC}, 'bad-request', 'vnid'),
    ({'nve': NVE2, 'port': 'p1', 'mac': MAC, 'vnid': '40'}, 'bad-request',
     'vnid'),
    ({'nve': NVE2, 'port': 'p1', 'mac': MAC, 'vnid': 40, 'ip': '1.2.3.4'},
     'bad-request', 'ip'),
    ({'nve': NVE2, 'port': 'p2', 'mac': MAC, 'vnid': 40}, 'conflict',
     'port'),
    ({'nve': NVE2, 'port': 'p1', 'mac': '02:00:00:00:00:77', 'vnid': 40},
     'not-found', 'mac'),
])
def test_bad_migrate_requests_change_nothing(known, server, params, code,
                                             field):  # noqa: F811
    _, addr = server
    before = state(known)
    error = rpc_error(client(addr), 'migrate', [params])
    assert (error['code'], error['field']) == (code, field), error
    assert state(known) == before


def test_cancel_without_a_migration_is_not_found(known, server):  # noqa
    _, addr = server
    error = rpc_error(client(addr), 'cancel_migration',
                      [{'vnid': 40, 'mac': MAC}])
    assert error['code'] == 'not-found'


def test_cli_migrate_and_cancel(known, run_cli):  # noqa: F811
    code, out, err = run_cli('migrate', '--nve', NVE2, '--port', 'p1',
                             '--mac', MAC, '--vnid', '40')
    assert code == 0, err
    assert out.startswith('migration started: %s in VN 40: from NVE %s port '
                          'p3 VLAN 10 to NVE %s port p1, awaited, deadline '
                          % (MAC, NVE1, NVE2)), out
    code, out, err = run_cli('--json', 'migrate', '--nve', NVE2, '--port',
                             'p1', '--mac', MAC, '--vnid', '40')
    assert code == 0 and '"action": "renewed"' in out
    code, out, err = run_cli('cancel-migration', '--vnid', '40', '--mac',
                             MAC)
    assert code == 0, err
    assert out.startswith('migration cancelled: ')
    code, out, err = run_cli('cancel-migration', '--vnid', '40', '--mac',
                             MAC)
    assert (code, out) == (1, '')
    assert err.startswith('nvo3-register: refused: not-found:')
    assert known.authority.db.migrating == set()


def test_cli_migrate_usage_errors_exit_2(run_cli):  # noqa: F811
    assert run_cli('migrate', '--nve', NVE2, '--mac', MAC, '--vnid',
                   '40')[0] == 2                       # no --port
    assert run_cli('cancel-migration', '--vnid', '40')[0] == 2


def test_a_hypervisor_migrates_and_cancels_on_its_own_nves_only(
        rpc_ctl):  # noqa: F811 (the fixture of test_auth)
    """With an auth file, ``migrate`` names the NVE the vNIC goes to, which
    must be the logged-in hypervisor's; ``cancel_migration`` names none, so
    the migration's old or new NVE must be."""
    ctl = rpc_ctl
    secrets = {name: name * 8 for name in ('hv1', 'hv2', 'hv3')}
    doc = {'tokens': [], 'hypervisors': [
        {'name': name, 'secret': secrets[name], 'nves': ['%016x' % dpid]}
        for dpid, name in enumerate(('hv1', 'hv2', 'hv3'), 1)]}
    mac2 = '02:00:00:00:00:02'
    for dpid, mac in ((2, MAC), (1, mac2)):
        ctl.authority.db.learn(dpid, 'p1', None, mac, None, ctl.now())
    ctl.authority.commit(ctl.now())
    srv = registration.RegistrationServer(
        ctl, auth=A.Auth.from_document(doc))
    with running(srv) as (_, addr):
        def logged_in(name):
            cl = client(addr)
            cl.call('login', [{'name': name, 'secret': secrets[name]}])
            return cl
        hv1, hv2, hv3 = (logged_in(n) for n in ('hv1', 'hv2', 'hv3'))
        err = rpc_error(hv1, 'migrate', [{'nve': NVE2, 'port': 'p1',
                                          'mac': mac2, 'vnid': 40}])
        assert (err['code'], err['field']) == ('forbidden', 'nve')
        assert not ctl.authority.db.migrating
        started = hv1.call('migrate', [{'nve': NVE1, 'port': 'p1',
                                        'mac': MAC, 'vnid': 40}])
        assert started['action'] == 'started'
        err = rpc_error(hv3, 'cancel_migration', [{'vnid': 40,
                                                   'mac': MAC}])
        assert (err['code'], err['field']) == ('forbidden', 'nve')
        assert hv2.call('cancel_migration', [{'vnid': 40, 'mac': MAC}])[
            'action'] == 'cancelled'           # the old place's hypervisor
    started, = ctl.authority.event_log.since(0, kinds={'migration-started'})
    cancelled, = ctl.authority.event_log.since(
        0, kinds={'migration-cancelled'})
    assert (started['actor'], cancelled['actor']) == ('hv1', 'hv2')
    assert ctl.counters['rpc_forbidden'] == 2
