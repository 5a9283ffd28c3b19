"""The OpenAPI document and the app agree.

* The route table and the document's paths are the same set of
  (method, path).
* Responses of a scripted walk through every route match the document.
* Property-based fuzzing generated from the document (schemathesis, valid
  and invalid requests) against the WSGI app in-process finds no 5xx and no
  response that breaks the document; invalid requests are refused.
"""

import copy
import json
import logging

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks as st_checks

from nvo3_ryu_app.northbound import rest
from rest_support import DP1, DP3, DPGW, MAC1, populated

METHODS = {'get', 'put', 'post', 'delete', 'patch', 'head', 'options',
           'trace'}
DOC_PATH = rest.OPENAPI_PATH

with open(DOC_PATH) as _handle:
    DOC = json.load(_handle)


def test_routes_and_document_are_the_same_set():
    documented = {(method.upper(), path)
                  for path, item in DOC['paths'].items()
                  for method in item if method in METHODS}
    assert documented == rest.route_table()


def test_every_operation_documents_its_errors_and_an_id():
    ids = set()
    for path, item in DOC['paths'].items():
        for method, operation in item.items():
            assert operation['operationId'] not in ids
            ids.add(operation['operationId'])
            assert '400' in operation['responses'], (method, path)
            if '{' in path and (method, path) != ('put', '/v1/nves/{dpid}'):
                assert '404' in operation['responses'], (method, path)
            if method in ('post', 'put', 'patch'):
                assert '413' in operation['responses']
                assert operation['requestBody']['required']


def test_request_schemas_refuse_unknown_fields():
    schemas = DOC['components']['schemas']
    for name in ('VNCreate', 'VNUpdate', 'NVEPut', 'PortBindingPut',
                 'InterconnectPut', 'ExternalPut'):
        assert schemas[name]['additionalProperties'] is False


def test_served_document_is_the_file():
    _, _, client = populated()
    assert client.ok('GET', '/v1/openapi.json') == DOC


# --- responses of a scripted walk match the document ------------------------

def _schema_for(app):
    schema = schemathesis.openapi.from_dict(copy.deepcopy(DOC))
    schema.app = app
    return schema


WALK = [
    ('GET', '/v1/vns', None),
    ('POST', '/v1/vns', {'vnid': 8001, 'name': 'green', 'gateway': None}),
    ('GET', '/v1/vns/{vnid}', {'vnid': 6001}),
    ('PATCH', '/v1/vns/{vnid}', ({'vnid': 8001}, {'name': 'lime'})),
    ('GET', '/v1/vns/{vnid}/members', {'vnid': 5001}),
    ('GET', '/v1/vns/{vnid}/mappings', {'vnid': 6001}),
    ('GET', '/v1/mappings', None),
    ('GET', '/v1/tesid', ('query', {'vnid': 5001, 'mac': MAC1})),
    ('GET', '/v1/nves', None),
    ('GET', '/v1/nves/{dpid}', {'dpid': DP3}),
    ('PUT', '/v1/nves/{dpid}', ({'dpid': '00000000000000ee'},
                                {'vtep_ip': '10.0.0.238'})),
    ('PUT', '/v1/nves/{dpid}/ports/{port_name}',
     ({'dpid': DP1, 'port_name': 'tap2'}, {'vlans': {'7': 8001}})),
    ('DELETE', '/v1/nves/{dpid}/ports/{port_name}',
     {'dpid': DP1, 'port_name': 'tap2'}),
    ('DELETE', '/v1/vns/{vnid}', {'vnid': 8001}),
    # interconnection functionality: a gateway, an interconnect, an
    # external network
    ('PUT', '/v1/nves/{dpid}', ({'dpid': DPGW},
                                {'vtep_ip': '10.99.0.255',
                                 'role': 'gateway'})),
    ('PUT', '/v1/interconnects/{name}', ({'name': 'blue-red'}, {
        'gateway': DPGW, 'vns': [5001, 6001],
        'router': {'5001': {'ip': '192.168.1.254/24',
                            'mac': '02:00:00:00:fe:51'}}})),
    ('PUT', '/v1/interconnects/{name}', ({'name': 'blue-red'}, {
        'gateway': DPGW, 'vns': [5001, 6001],
        'router': {'5001': {'ip': '192.168.1.253/24',
                            'mac': '02:00:00:00:fe:51'}}})),
    ('GET', '/v1/interconnects', None),
    ('GET', '/v1/interconnects/{name}', {'name': 'blue-red'}),
    ('PUT', '/v1/externals/{name}', ({'name': 'lab'}, {
        'gateway': DPGW, 'port': 'ext0', 'vlans': {'100': 5001},
        'allowed_macs': [MAC1]})),
    ('GET', '/v1/externals', None),
    ('GET', '/v1/externals/{name}', {'name': 'lab'}),
    ('DELETE', '/v1/externals/{name}', {'name': 'lab'}),
    ('DELETE', '/v1/interconnects/{name}', {'name': 'blue-red'}),
    ('GET', '/v1/sync', None),
    ('GET', '/v1/topology', None),
    ('GET', '/v1/events', ('query', {'limit': 5, 'type': ['attach']})),
    ('GET', '/v1/events/stream', ('query', {'since': 0, 'timeout': 0})),
    ('GET', '/v1/openapi.json', None),
    ('GET', '/metrics', None),
    ('GET', '/', None),
    ('GET', '/ui/{path}', {'path': 'app.js'}),
    # error answers are documented too
    ('GET', '/v1/vns/{vnid}', {'vnid': 4242}),
    ('POST', '/v1/vns', {'vnid': 5001, 'name': 'again'}),
    ('PUT', '/v1/nves/{dpid}/ports/{port_name}',
     ({'dpid': DP1, 'port_name': 'tap2'}, {'vnid': 1, 'x': 2})),
    ('GET', '/ui/{path}', {'path': 'nope.txt'}),
    ('PUT', '/v1/interconnects/{name}', ({'name': 'x'}, {
        'gateway': DPGW, 'vns': [5001, 4242]})),
    ('PUT', '/v1/interconnects/{name}', ({'name': 'x'}, {
        'gateway': DP1, 'vns': [5001, 7001]})),
    ('PUT', '/v1/interconnects/{name}', ({'name': 'x'}, {
        'gateway': DPGW, 'vns': [5001, 5001]})),
    ('PUT', '/v1/externals/{name}', ({'name': 'x'}, {
        'gateway': DPGW, 'port': 'ext0', 'vlans': {'5000': 5001}})),
    ('GET', '/v1/interconnects/{name}', {'name': 'nope'}),
]


def _case(schema, method, path, args):
    operation = schema[path][method]
    kwargs = {}
    if isinstance(args, tuple) and args[0] == 'query':
        kwargs['query'] = args[1]
    elif isinstance(args, tuple):
        kwargs['path_parameters'], kwargs['body'] = args
    elif args is not None and '{' in path:
        kwargs['path_parameters'] = args
    elif args is not None:
        kwargs['body'] = args
    return operation.Case(**kwargs)


def test_scripted_walk_matches_the_document():
    ctl, app, _ = populated()
    ctl.ack()
    schema = _schema_for(app)
    statuses = []
    for method, path, args in WALK:
        case = _case(schema, method, path, args)
        response = case.call()
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)
    assert statuses[:32] == [200, 201, 200, 200, 200, 200, 200, 200, 200,
                             200, 201, 201, 204, 204,
                             201, 201, 200, 200, 200, 201, 200, 200, 204,
                             204,
                             200, 200, 200, 200, 200, 200, 200, 200]
    assert statuses[32:] == [404, 409, 400, 404, 404, 409, 400, 400, 404]


# --- fuzzing -----------------------------------------------------------------

CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance,
          st_checks.content_type_conformance,
          st_checks.response_headers_conformance,
          st_checks.response_schema_conformance,
          st_checks.negative_data_rejection, st_checks.unsupported_method]

FUZZ_CTL, FUZZ_APP, _ = populated(gateway=True)
FUZZ = _schema_for(FUZZ_APP)
# Waits the document allows are real; the fuzzer must not sit in them.
NO_WAIT = {'/v1/events': 'wait', '/v1/events/stream': 'timeout'}


def _valid_wait(value):
    """Would the app accept (and wait) this ``wait``/``timeout`` value?"""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or not rest.parse.NUMBER.fullmatch(value):
        return False
    return 0 <= float(value) <= rest.events.MAX_STREAM


def _no_waiting(case):
    key = NO_WAIT.get(case.operation.path)
    if key is None or case.method != 'GET':
        return
    query = dict(case.query or {})
    value = query.get(key)
    if value is None and key == 'timeout':
        query[key] = 0
    elif _valid_wait(value):
        query[key] = 0        # valid stays valid, just without the wait
    case.query = query


@FUZZ.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_fuzz_from_the_document(case, caplog):
    _no_waiting(case)
    with caplog.at_level(logging.ERROR,
                         logger='nvo3_ryu_app.northbound.rest.server'):
        case.call_and_validate(checks=CHECKS)
    assert not caplog.records, caplog.text


def test_fuzzing_left_the_database_consistent():
    """Whatever the fuzzer did, the views still agree with each other."""
    from rest_support import Client
    client = Client(FUZZ_APP)
    vns = client.ok('GET', '/v1/vns')
    for vn in vns:
        members = client.ok('GET', '/v1/vns/%d/members' % vn['vnid'])
        assert [m['nve'] for m in members] == vn['nves']
    assert client.ok('GET', '/v1/topology')['nodes']
