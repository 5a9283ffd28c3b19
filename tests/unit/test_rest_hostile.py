"""REST against hostile clients, in process.

The same inputs go to the running app in tests/integration/test_hostile.py;
here each rule is pinned down on the WSGI app: Host names (DNS
rebinding), JSON-only bodies (cross-site request forgery), a body cut
short or sent too slowly, port names, addresses with a zone index, and
HTTP methods that must not become metric labels.
"""

import copy
import io
import json
import logging
import time

import eventlet
import jsonschema_rs
import pytest
import schemathesis
import webob
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from nvo3_ryu_app.northbound import rest
from rest_support import DP1, populated

DOC = json.load(open(rest.OPENAPI_PATH))


@pytest.fixture
def world():
    return populated()


def call(app, method, path, body=None, headers=None, ctype=None,
         environ=None):
    req = webob.Request.blank(path, method=method, environ=environ)
    if body is not None:
        req.body = body if isinstance(body, bytes) else json.dumps(
            body).encode()
        req.content_type = ctype or 'application/json'
    for key, value in (headers or {}).items():
        req.headers[key] = value
    resp = req.get_response(app)
    data = json.loads(resp.body) if resp.content_type == \
        'application/json' and resp.body else resp.body
    return resp.status_code, data


# --- Host: DNS rebinding ----------------------------------------------------------

@pytest.mark.parametrize('host', ['evil.example', 'evil.example:8080',
                                  'localhost.evil.example', 'rebind.me.'])
def test_a_foreign_host_name_is_refused(world, host):
    ctl, app, client = world
    before = client.state(ctl)
    for method, path, body in (('GET', '/v1/vns', None),
                               ('POST', '/v1/vns', {'vnid': 9, 'name': 'x'}),
                               ('GET', '/metrics', None)):
        status, data = call(app, method, path, body, {'Host': host})
        assert status == 400, (host, method, path)
        assert data['error']['field'] == 'Host'
    assert client.state(ctl) == before


@pytest.mark.parametrize('host', ['127.0.0.1:8080', '127.0.0.1', '[::1]:8080',
                                  '[::1]', 'localhost', 'LOCALHOST:80',
                                  'localhost.', '10.1.2.3:8080'])
def test_addresses_and_allowed_names_are_served(world, host):
    _, app, _ = world
    assert call(app, 'GET', '/v1/vns', headers={'Host': host})[0] == 200


def test_names_the_operator_allows(world):
    ctl = world[0]
    app = rest.make_app(ctl, allowed_hosts=['nva.example.net'])
    assert call(app, 'GET', '/v1/vns',
                headers={'Host': 'NVA.example.net:8080'})[0] == 200
    assert call(app, 'GET', '/v1/vns', headers={'Host': 'localhost'})[0] \
        == 400


# --- JSON only: cross-site request forgery ---------------------------------------

@pytest.mark.parametrize('ctype', [
    'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data',
    'application/json-seq', None])
def test_a_body_that_is_not_sent_as_json_is_refused(world, ctype):
    ctl, app, client = world
    before = client.state(ctl)
    body = json.dumps({'vnid': 9, 'name': 'csrf'}).encode()
    req = webob.Request.blank('/v1/vns', method='POST')
    req.body = body
    if ctype is not None:
        req.headers['Content-Type'] = ctype
    resp = req.get_response(app)
    assert resp.status_code == 415
    assert json.loads(resp.body)['error']['code'] == 'unsupported-media-type'
    assert client.state(ctl) == before


def test_json_with_parameters_is_json(world):
    _, app, _ = world
    status, _ = call(app, 'POST', '/v1/vns', {'vnid': 9, 'name': 'ok'},
                     ctype='Application/JSON; charset=utf-8')
    assert status == 201


# --- bodies cut short or sent slowly ----------------------------------------------

def test_a_client_gone_mid_body_gets_a_400_not_a_500(world, caplog):
    ctl, app, client = world
    before = client.state(ctl)
    req = webob.Request.blank('/v1/vns', method='POST')
    req.content_type = 'application/json'
    req.environ['wsgi.input'] = io.BytesIO(b'{"vnid": 9, "na')
    req.environ['CONTENT_LENGTH'] = '40'
    with caplog.at_level(logging.ERROR, logger='nvo3_ryu_app.northbound.rest'):
        resp = req.get_response(app)
    assert resp.status_code == 400
    assert 'ended early' in json.loads(resp.body)['error']['message']
    assert not caplog.records
    assert client.state(ctl) == before


class Dribble:
    """A body that arrives a byte a second (in the hub: it yields)."""

    def read(self, *_):
        eventlet.sleep(5)
        return b'{'


def test_a_body_sent_too_slowly_gets_408_by_the_deadline(world):
    ctl, app, client = world
    before = client.state(ctl)
    req = webob.Request.blank('/v1/vns', method='POST')
    req.content_type = 'application/json'
    req.environ['wsgi.input'] = Dribble()
    req.environ['CONTENT_LENGTH'] = '40'
    req.environ['nvo3.deadline'] = time.monotonic() + 0.2
    req.environ['nvo3.request_timeout'] = 0.2
    started = time.monotonic()
    resp = req.get_response(app)
    assert resp.status_code == 408
    assert time.monotonic() - started < 2.0
    assert client.state(ctl) == before


# --- port names, addresses --------------------------------------------------------

@pytest.mark.parametrize('name', ['.', '..', ':', 'eth0:1', 'a' * 16,
                                  'tap%201'])
def test_port_names_ovs_would_not_have_are_refused(world, name):
    ctl, app, client = world
    before = client.state(ctl)
    path = '/v1/nves/%s/ports/%s' % (DP1, name)
    status, data = call(app, 'PUT', path, {'vnid': 5001})
    assert status == 400 and data['error']['field'] == 'port_name'
    assert call(app, 'DELETE', path)[0] == 400
    assert client.state(ctl) == before


@pytest.mark.parametrize('method,path,body,field', [
    ('PUT', '/v1/nves/' + DP1, {'vtep_ip': 'fe80::1%eth0'}, 'vtep_ip'),
    ('POST', '/v1/vns', {'vnid': 9, 'name': 'z', 'service': 'l3',
                         'gateway': {'mac': '02:00:00:00:fe:09',
                                     'ips': ['fe80::1%eth0/64']}},
     'gateway.ips'),
    ('GET', '/v1/mappings?ip=fe80::1%25eth0', None, 'ip'),
])
def test_an_address_with_a_zone_index_is_refused(world, method, path, body,
                                                 field):
    ctl, app, client = world
    before = client.state(ctl)
    status, data = call(app, method, path, body)
    assert status == 400 and data['error']['field'] == field
    assert client.state(ctl) == before


# --- metrics: a method string is not a label --------------------------------------

def test_method_strings_do_not_grow_the_metrics(world):
    _, app, _ = world

    def series():
        body = call(app, 'GET', '/metrics')[1].decode()
        return {line.rsplit(' ', 1)[0] for line in body.splitlines()
                if line.startswith('nvo3_rest')}
    series()                        # its own series exist from now on
    for i in range(10):
        call(app, 'X%04d' % i + 'M' * 1000, '/v1/vns')
    before = series()
    for i in range(10, 300):
        call(app, 'X%04d' % i + 'M' * 1000, '/v1/vns')
    after = series()
    assert after == before
    assert 'nvo3_rest_requests_total{method="other",route="unmatched",' \
        'status="405"}' in after
    assert not any('MMMM' in line for line in after)


# --- the document refuses what the code refuses -----------------------------------

def _param_schema(path, method, name):
    for param in DOC['paths'][path][method]['parameters']:
        if param['name'] == name:
            return param['schema']
    raise KeyError(name)


def _body_schema(name):
    schema = copy.deepcopy(DOC['components']['schemas'][name])
    return schema


DOC_REFUSES = [
    (_param_schema('/v1/nves/{dpid}', 'get', 'dpid'), '0000000000000000'),
    (_param_schema('/v1/nves/{dpid}/ports/{port_name}', 'put',
                   'port_name'), '.'),
    (_param_schema('/v1/nves/{dpid}/ports/{port_name}', 'put',
                   'port_name'), '..'),
    (_param_schema('/v1/nves/{dpid}/ports/{port_name}', 'put',
                   'port_name'), ':'),
    (_param_schema('/v1/tesid', 'get', 'mac'), ''),
    (_param_schema('/v1/mappings', 'get', 'mac'), ''),
    (_param_schema('/v1/mappings', 'get', 'mac'), '01:00:5e:00:00:01'),
    (_body_schema('NVEPut'), {'vtep_ip': ''}),
    (_body_schema('PortBindingPut'), {}),
    (_body_schema('PortBindingPut'), {'vlans': {}}),
    (_body_schema('PortBindingPut'), {'vnid': 5001, 'vlans': {'1': 5001}}),
    (_body_schema('VNCreate'), {'vnid': 9, 'name': 'x',
                                'gateway': {'mac': ''}}),
    (_body_schema('VNCreate'), {'vnid': 9, 'name': 'x',
                                'route_targets': ['65001']}),
    (_body_schema('VNUpdate'), {'evpn': 'yes'}),
]


@pytest.mark.parametrize('schema,value', DOC_REFUSES)
def test_the_document_refuses_inputs_the_code_refuses(schema, value):
    validator = jsonschema_rs.Draft4Validator(schema, validate_formats=True)
    assert not validator.is_valid(value)


SCHEMA = schemathesis.openapi.from_dict(copy.deepcopy(DOC))
# Values the document cannot describe (JSON Schema of OpenAPI 3.0): which
# addresses are unicast, which string keys are VLAN IDs or VNIDs, an l3 VN
# needs a gateway, a gateway address needs a subnet prefix, which VN of an
# interconnect is the L2 one its router belongs to, how wide a route
# target's number may be beside its AS or address (RFC 4360).  Anything
# else the document allows, the code must accept.
SEMANTIC = {'ip', 'vtep_ip', 'vlans', 'gateway', 'gateway.ips', 'router',
            'route_targets'}


def _positive(operation):
    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    _, app, _ = populated()
    refused = []

    @given(strategy)
    @settings(max_examples=25, deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    def run(case):
        if case.operation.path in ('/v1/events', '/v1/events/stream'):
            query = dict(case.query or {})
            query['wait' if case.operation.path == '/v1/events'
                  else 'timeout'] = 0
            case.query = query
        response = case.call(app=app)
        if response.status_code == 400:
            field = response.json()['error']['field']
            if field not in SEMANTIC:
                refused.append((field, case.path_parameters, case.query,
                                case.body))
    run()
    return refused


@pytest.mark.parametrize('operation', [
    result.ok() for result in SCHEMA.get_all_operations()],
    ids=lambda op: op.label)
def test_what_the_document_allows_the_code_accepts(operation):
    assert _positive(operation) == []
