"""Who may change the network, without a switch: the auth file, REST tokens
and roles, hypervisor logins and their scope on the RPC, the audit trail
(``actor``), the switch identity check, the probe-verified registration
that would take over a live location, and deleting an NVE record."""

import contextlib
import json

import pytest
from os_ken.lib import rpc

from nvo3_ryu_app.authority import commands as C
from nvo3_ryu_app.authority import pipeline as P
from nvo3_ryu_app.authority.errors import Conflict
from nvo3_ryu_app.northbound import auth as A
from nvo3_ryu_app.northbound import registration
from nvo3_ryu_app.northbound import rest
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.southbound import ofguard

import rest_support
from test_mobility import _arp_reply
from test_registration import Ctl, client, running

ADMIN_TOKEN = 'a' * 32
READER_TOKEN = 'r' * 32
NAMELESS_TOKEN = 'n' * 32
HV1_SECRET = 's' * 20
DP1, DP2 = '0000000000000001', '0000000000000002'
MAC = '02:00:00:00:00:01'
DOC = {
    'tokens': [{'token': ADMIN_TOKEN, 'role': 'admin', 'name': 'ops'},
               {'token': READER_TOKEN, 'role': 'reader', 'name': 'viewer'},
               {'token': NAMELESS_TOKEN, 'role': 'admin'}],
    'hypervisors': [{'name': 'hv1', 'secret': HV1_SECRET, 'nves': [DP1]}]}


# --- the auth file -----------------------------------------------------------

def test_tokens_and_logins_of_an_auth_file(tmp_path):
    path = tmp_path / 'auth.json'
    path.write_text(json.dumps(DOC))
    auth = A.Auth.load(str(path))
    assert auth.token(ADMIN_TOKEN) == A.Principal('ops', 'admin')
    assert auth.token(READER_TOKEN).may_write is False
    assert auth.token(ADMIN_TOKEN + 'x') is None
    # Without a name, the audit trail shows a hash, never the token.
    nameless = auth.token(NAMELESS_TOKEN).name
    assert nameless == A.token_name(NAMELESS_TOKEN)
    assert nameless.startswith('token-') and NAMELESS_TOKEN not in nameless
    hv1 = auth.login('hv1', HV1_SECRET)
    assert hv1.name == 'hv1' and hv1.nves == {1}
    assert auth.login('hv1', HV1_SECRET + 'x') is None
    assert auth.login('nobody', HV1_SECRET) is None
    hv1.check_nve(DP1)
    with pytest.raises(A.Forbidden) as info:
        hv1.check_nve(DP2)
    assert info.value.field == 'nve' and DP2 in info.value.message


@pytest.mark.parametrize('doc,words', [
    ({'tokens': [{'token': 'short', 'role': 'admin'}]}, 'at least 16'),
    ({'tokens': [{'token': 'x' * 16, 'role': 'root'}]}, 'role'),
    ({'tokens': [{'token': 'x' * 16, 'role': 'admin', 'extra': 1}]},
     'unknown key'),
    ({'tokens': [{'token': 'x' * 16, 'role': 'admin'},
                 {'token': 'x' * 16, 'role': 'reader'}]}, 'same token'),
    ({'tokens': [{'token': 'x' * 16, 'role': 'admin', 'name': 'a'},
                 {'token': 'y' * 16, 'role': 'admin', 'name': 'a'}]},
     'used twice'),
    ({'hypervisors': [{'name': 'hv', 'secret': 'x' * 16,
                       'nves': ['not-a-dpid']}]}, 'nves'),
    ({'hypervisors': [{'name': 'hv', 'secret': 'x' * 16}]}, 'missing'),
    ({'tokens': {}}, 'must be a list'),
    ([], 'must be an object'),
])
def test_a_bad_auth_file_names_its_fault(doc, words):
    with pytest.raises(A.AuthFileError) as info:
        A.Auth.from_document(doc)
    assert words in str(info.value)


def test_an_unreadable_auth_file_is_one_clear_error(tmp_path):
    path = tmp_path / 'auth.json'
    path.write_text('{"tokens": [')
    with pytest.raises(A.AuthFileError) as info:
        A.Auth.load(str(path))
    assert str(path) in str(info.value)


def test_without_an_auth_file_only_loopback_may_listen():
    assert A.exposure(Settings()) == []
    assert A.exposure(Settings(rest_listen_host='::1',
                               rpc_listen_host='localhost')) == []
    assert A.exposure(Settings(rest_listen_host='0.0.0.0')) == [
        ('rest_listen_host', '0.0.0.0')]
    assert A.exposure(Settings(rpc_listen_host='10.0.0.5')) == [
        ('rpc_listen_host', '10.0.0.5')]
    assert A.exposure(Settings(rest_listen_host='0.0.0.0',
                               auth_file='/etc/nvo3/auth.json')) == []


@pytest.mark.parametrize('header,token', [
    ('Bearer abc', 'abc'), ('bearer  abc ', 'abc'), ('Basic abc', None),
    ('Bearer', None), ('', None), (None, None)])
def test_bearer_header(header, token):
    assert A.bearer(header) == token


# --- REST ------------------------------------------------------------------------

@pytest.fixture
def secured():
    ctl = rest_support.FakeCtl()
    app = rest.make_app(ctl, auth=A.Auth.from_document(DOC))
    return ctl, app, rest_support.Client(app)


def bearer(token):
    return {'Authorization': 'Bearer ' + token}


def test_rest_without_a_valid_token_is_401_with_a_challenge(secured):
    ctl, _, cl = secured
    for headers in ({}, bearer('x' * 32), {'Authorization': 'Basic eDp5'}):
        status, body, resp = cl.call('POST', '/v1/vns',
                                     {'vnid': 5001, 'name': 'b'},
                                     headers=headers)
        assert status == 401 and body['error']['code'] == 'unauthorized'
        assert resp.headers['WWW-Authenticate'].startswith('Bearer')
        status, body, _ = cl.call('GET', '/v1/vns', headers=headers)
        assert status == 401
    assert ctl.authority.db.vns == {}
    assert ctl.counters['rest_unauthorized'] == 6


def test_a_reader_reads_and_may_not_write(secured):
    ctl, _, cl = secured
    status, body, _ = cl.call('POST', '/v1/vns', {'vnid': 5001, 'name': 'b'},
                              headers=bearer(READER_TOKEN))
    assert status == 403 and body['error']['code'] == 'forbidden'
    assert 'viewer' in body['error']['message']
    assert ctl.authority.db.vns == {}
    assert cl.call('GET', '/v1/vns', headers=bearer(READER_TOKEN))[:2] == (
        200, [])
    # Public: what scrapers and the page's own files need.
    assert cl.call('GET', '/metrics')[0] == 200
    assert cl.call('GET', '/')[0] == 200


def test_an_admin_write_names_its_token_in_every_event(secured):
    ctl, _, cl = secured
    assert cl.call('POST', '/v1/vns', {'vnid': 5001, 'name': 'b'},
                   headers=bearer(ADMIN_TOKEN))[0] == 201
    assert cl.call('PUT', '/v1/nves/' + DP1, {'vtep_ip': '10.0.0.1'},
                   headers=bearer(NAMELESS_TOKEN))[0] == 201
    ctl.connect(1)                           # the switch's own doing
    assert cl.call('PUT', '/v1/nves/%s/ports/tap1' % DP1, {'vnid': 5001},
                   headers=bearer(ADMIN_TOKEN))[0] == 201
    events = ctl.event_log.since(0)
    assert [(e['type'], e.get('actor')) for e in events][:1] == [
        ('vn-created', 'ops')]
    assert all(e.get('actor') for e in events), events
    assert {e['actor'] for e in events if e['type'] == 'nve-up'} == {
        'switch'}
    assert {e['actor'] for e in events if e['type'] == 'vn-join'} == {
        'ops'}
    assert ctl.event_log.actor is None       # nothing leaks past a write


def test_without_auth_rest_writes_are_the_anonymous_actors():
    ctl, _, cl = rest_support.make()
    cl.ok('POST', '/v1/vns', {'vnid': 5001, 'name': 'b'})
    created, = ctl.event_log.since(0, kinds={'vn-created'})
    assert created['actor'] == 'rest'


# --- the registration RPC ---------------------------------------------------------

@pytest.fixture
def rpc_ctl():
    ctl = Ctl()
    ctl.execute(C.CreateVN(40, 'blue', 'l2'))
    for dpid in (1, 2):
        ctl.execute(C.RegisterNVE(dpid, '10.0.0.%d' % dpid))
        ctl.execute(C.BindPort(dpid, 'p1', vnid=40))
        ctl.authority.switch_connected(
            dpid, {'p1': 1, 'p2': 2, 'vxlan0': 100},
            '02:aa:00:00:00:0%d' % dpid, ctl.now())
    return ctl


def rpc_error(cl, method, params):
    with pytest.raises(rpc.RPCError) as info:
        cl.call(method, [params])
    return info.value.get_value()


def assoc(nve=DP1, port='p1', mac=MAC):
    return {'nve': nve, 'port': port, 'mac': mac, 'vnid': 40}


def secured_rpc(ctl):
    """A RegistrationServer checking DOC's logins, serving: its address."""
    srv = registration.RegistrationServer(ctl, auth=A.Auth.from_document(DOC))
    return _address(running(srv))


@contextlib.contextmanager
def _address(served):
    with served as (_, addr):
        yield addr


def test_rpc_calls_before_a_login_are_refused(rpc_ctl):
    with secured_rpc(rpc_ctl) as addr:
        cl = client(addr)
        for method, params in (('associate', assoc()),
                               ('dissociate', {'nve': DP1, 'mac': MAC}),
                               ('query', {'vnid': 40, 'mac': MAC})):
            err = rpc_error(cl, method, params)
            assert err['code'] == 'unauthorized', err
        err = rpc_error(cl, 'login', {'name': 'hv1', 'secret': 'wrong' * 4})
        assert (err['code'], err['field']) == ('unauthorized', 'secret')
    assert rpc_ctl.authority.db.attachments == {}
    assert rpc_ctl.counters['rpc_logins_failed'] == 1


def test_a_hypervisor_registers_on_its_own_nves_only(rpc_ctl):
    with secured_rpc(rpc_ctl) as addr:
        cl = client(addr)
        who = cl.call('login', [{'name': 'hv1', 'secret': HV1_SECRET}])
        assert who == {'name': 'hv1', 'authentication': True, 'nves': [DP1]}
        err = rpc_error(cl, 'associate', assoc(nve=DP2))
        assert (err['code'], err['field']) == ('forbidden', 'nve')
        assert cl.call('associate', [assoc()])['action'] == 'registered'
        err = rpc_error(cl, 'dissociate', {'nve': DP2, 'mac': MAC})
        assert err['code'] == 'forbidden'
        assert cl.call('query', [{'vnid': 40, 'mac': MAC}])['tesid'][
            'nve'] == DP1
    attach, = rpc_ctl.authority.event_log.since(0, kinds={'attach'})
    assert attach['actor'] == 'hv1'
    assert rpc_ctl.counters['rpc_forbidden'] == 2


def test_three_failed_logins_close_the_connection(rpc_ctl):
    with secured_rpc(rpc_ctl) as addr:
        cl = client(addr)
        for _ in range(3):
            rpc_error(cl, 'login', {'name': 'hv1', 'secret': 'x' * 16})
        with pytest.raises(EOFError):       # closed: even the secret fails
            cl.call('login', [{'name': 'hv1', 'secret': HV1_SECRET}])


def test_a_registration_never_binds_a_port(rpc_ctl):
    with running(registration.RegistrationServer(rpc_ctl)) as (_, addr):
        err = rpc_error(client(addr), 'associate', assoc(port='p2'))
    assert (err['code'], err['field']) == ('not-found', 'port')
    assert 'p2' not in rpc_ctl.authority.db.nves[1].bindings


# --- a registration that would take over a live location --------------------

def live_vnic(ctl):
    """MAC learned at NVE 1 port p1 with an address: live there."""
    db = ctl.authority.db
    db.learn(1, 'p1', None, MAC, '192.168.40.5', ctl.now())
    ctl.authority.commit(ctl.now())


def test_taking_a_live_vnic_waits_for_the_probe_and_an_answer_refuses(
        rpc_ctl):
    live_vnic(rpc_ctl)
    auth = rpc_ctl.authority
    done = auth.execute(C.Associate(DP2, 'p1', MAC, 40, actor='hv2'),
                        rpc_ctl.now())
    assert done['action'] == 'pending'
    assert done['probed'] == [{'mac': MAC, 'vnid': 40, 'nve': DP1,
                               'port': 'p1', 'reason': 'old-location-live'}]
    probe, = auth.take_packet_outs()
    assert probe.dpid == 1 and probe.actions == [('output', 1)]
    # The old location answers: a conflict, and nothing moved.
    answer = _arp_reply(MAC, '192.168.40.5', P.PROBE_MAC)
    auth.packet_in(1, P.L2_FORWARD, 1, 'p1', {'metadata': 40}, answer,
                   rpc_ctl.now())
    result, error = auth.take_verdict(done['verification'])
    assert result is None and isinstance(error, Conflict)
    assert auth.db.attachments[(40, MAC)].nve == 1
    conflict = auth.event_log.since(0, kinds={'conflict'})[-1]
    assert (conflict['actor'], conflict['how'], conflict['reason']) == (
        'hv2', 'registered', 'old-location-live')
    assert not auth.event_log.since(0, kinds={'move'})


def test_taking_a_silent_location_is_a_move_by_the_registrant(rpc_ctl):
    live_vnic(rpc_ctl)
    auth = rpc_ctl.authority
    done = rpc_ctl.execute(C.Associate(DP2, 'p1', MAC, 40, actor='hv2'))
    # Another registration may not race the one being verified.
    with pytest.raises(Conflict):
        rpc_ctl.execute(C.Associate(DP2, 'p1', MAC, 40, actor='hv2'))
    result, error = rpc_ctl.wait_verdict(done['verification'])
    assert error is None and result['action'] == 'registered', error
    assert auth.db.attachments[(40, MAC)].nve == 2
    move = auth.event_log.since(0, kinds={'move'})[-1]
    assert (move['actor'], move['how']) == ('hv2', 'registered')


# --- switch identity -----------------------------------------------------------

CERT = {'subject': ((('organizationName', 'lab'),),
                    (('commonName', DP1),)),
        'subjectAltName': (('DNS', 'nve1.example'),)}


def test_a_certificate_must_name_the_dpid():
    assert ofguard.certificate_names(CERT) == [DP1, 'nve1.example']
    assert ofguard.refusal(1, CERT, False, True, True) is None
    reason, detail = ofguard.refusal(2, CERT, False, True, True)
    assert reason == 'certificate' and DP2 in detail
    by_san = {'subject': ((('commonName', 'hv2'),),),
              'subjectAltName': (('DNS', DP2.upper()),)}
    assert ofguard.refusal(2, by_san, False, True, True) is None
    reason, detail = ofguard.refusal(1, {}, False, True, True)
    assert reason == 'certificate' and '--ca-certs' in detail


def test_a_second_session_and_an_unknown_switch_are_refused():
    assert ofguard.refusal(1, None, True, True, True)[0] == 'duplicate'
    assert ofguard.refusal(9, None, False, False, True) is None
    assert ofguard.refusal(9, None, False, False, False)[0] == 'unknown'
    assert ofguard.refusal(1, None, False, True, False) is None


# --- deleting an NVE record ----------------------------------------------------

def test_deleting_an_nve_detaches_its_tenant_systems_and_forgets_it():
    ctl, _, cl = rest_support.populated()
    ctl.ack()
    peer_flows = [f for f in ctl.authority.planner.tables[1].desired.values()
                  if rest_support.MAC2 in str(f)]
    assert peer_flows
    status, _, _ = cl.call('DELETE', '/v1/nves/' + DP2)
    assert status == 204
    assert cl.call('GET', '/v1/nves/' + DP2)[0] == 404
    assert DP2 not in {n['dpid'] for n in cl.ok('GET', '/v1/nves')}
    assert (5001, rest_support.MAC2) not in ctl.authority.db.attachments
    assert not [f for f in ctl.authority.planner.tables[1].desired.values()
                if rest_support.MAC2 in str(f) or '10.99.0.2' in str(f)]
    deleted, = ctl.event_log.since(0, kinds={'nve-deleted'})
    assert (deleted['nve'], deleted['connected'], deleted['actor']) == (
        DP2, True, 'rest')
    detach, = [e for e in ctl.event_log.since(0, kinds={'detach'})
               if e['mac'] == rest_support.MAC2]
    assert detach['reason'] == 'nve-deleted'
    # The app closes the switch's session.
    assert ctl.service.take_disconnects() == [2]
    assert ctl.authority.store.load().get(('nve', 2)) is None
    assert cl.call('DELETE', '/v1/nves/' + DP2)[0] == 404
