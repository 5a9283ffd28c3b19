"""Shared pieces of the REST tests: the app as REST sees it, and a client.

:class:`FakeCtl` has what rest.make_app needs of NVO3App -- ``execute()``,
``views``, ``event_log``, ``counters``, ``sync_status()``, ``audit_now()``,
``store_stats()`` -- over a real :class:`service.Service`, the code the app
runs.  Its NVEs are simulated switches (fakeof.SimulatedNVEs) that answer
dumps at once and get what the service sends when told (:meth:`ack`): a
write is committed and durable when ``execute`` returns, and its flows
leave at the next ``ack``, like a barrier that the test releases.
"""

import json

import webob

from fakeof import SimulatedNVEs
from nvo3_ryu_app.northbound import rest
from nvo3_ryu_app.service import Service
from nvo3_ryu_app.settings import Settings
from nvo3_ryu_app.storage import store

DP1, DP2, DP3 = '0000000000000001', '0000000000000002', '0000000000000003'
MAC1, MAC2, MAC3 = '02:00:00:00:00:01', '02:00:00:00:00:02', \
    '02:00:00:00:00:03'
PORTS = {'vxlan0': 10, 'gre0': 11, 'tap1': 1, 'tap2': 2, 'trunk0': 3}


class FakeCtl:
    def __init__(self):
        self.clock = 1000.0
        self.service = Service(Settings(), store.MemoryStore(),
                               start_time=self.clock)
        self.authority = self.service.authority
        self.nves = SimulatedNVEs(self.service)
        self.views = self.service.views
        self.event_log = self.service.event_log
        self.counters = self.service.counters
        self.sync_status = self.service.sync_status
        self.store_stats = self.service.store_stats
        self.cluster_status = self.service.cluster_status

    def now(self):
        return self.clock

    def execute(self, command, dry_run=False):
        try:
            return self.service.execute(command, self.now(), dry_run=dry_run)
        finally:
            self.service.sync()

    def trace(self, *args):
        return self.service.trace(*args)

    def connect(self, dpid, ports=None):
        self.nves.connect(dpid, dict(ports or PORTS),
                          '02:aa:00:00:00:%02x' % dpid, self.now())

    def learn(self, dpid, port, mac, ip=None, vlan=None):
        self.authority.db.learn(dpid, port, vlan, mac, ip, self.now())
        self.authority.commit(self.now())

    def ack(self):
        """Every connected NVE gets and applies its pending changes."""
        self.nves.drain(self.now())

    def audit_now(self, dpid):
        """As the app: None when the NVE is not connected (or busy), else
        the comparison of what it holds with what it must hold."""
        result = {}
        msgs = self.service.start_audit(dpid, result.update)
        if msgs is None:
            return None
        self.nves.deliver(dpid, msgs, self.now())
        return result or None


class Client:
    """Calls the WSGI app in-process, as a server would."""

    def __init__(self, app):
        self.app = app

    def call(self, method, path, body=None, raw=None, headers=None):
        req = webob.Request.blank(path, method=method)
        if raw is not None:
            req.body = raw
            req.content_type = 'application/json'   # a well-behaved client
        elif body is not None:
            req.body = json.dumps(body).encode()
            req.content_type = 'application/json'
        for key, value in (headers or {}).items():
            req.headers[key] = value
        resp = req.get_response(self.app)
        data = resp.body
        if resp.content_type == 'application/json' and data:
            data = json.loads(data)
        return resp.status_code, data, resp

    def get(self, path, **kw):
        return self.call('GET', path, **kw)

    def ok(self, method, path, body=None, status=None):
        code, data, _ = self.call(method, path, body)
        assert code < 300 and (status is None or code == status), (code, data)
        return data

    def error(self, method, path, body=None, raw=None, status=400,
              field=None):
        code, data, _ = self.call(method, path, body, raw)
        assert code == status, (code, data)
        assert set(data) == {'error'}, data
        assert set(data['error']) == {'code', 'message', 'field'}, data
        assert data['error']['message']
        if field is not None:
            assert data['error']['field'] == field, data
        return data['error']

    def state(self, ctl):
        """Everything a client (and the store) can see, for comparisons."""
        vns = self.ok('GET', '/v1/vns')
        out = {'vns': vns, 'nves': self.ok('GET', '/v1/nves'),
               'topology': self.ok('GET', '/v1/topology'),
               'sync': self.ok('GET', '/v1/sync'),
               'mappings': self.ok('GET', '/v1/mappings'),
               'events': ctl.authority.event_log.seq,
               'store': ctl.authority.store.load()}
        for vn in vns:
            for part in ('members', 'mappings'):
                out['%s/%d' % (part, vn['vnid'])] = self.ok(
                    'GET', '/v1/vns/%d/%s' % (vn['vnid'], part))
        return out


def make(notifier=None):
    ctl = FakeCtl()
    app = rest.make_app(ctl, notifier=notifier)
    return ctl, app, Client(app)


DPGW = '00000000000000ff'
GW_PORTS = dict(PORTS, geneve0=12, ext0=4)


def populated(notifier=None, gateway=False):
    """Two VNs, three NVEs (two connected), bindings, tenant systems; with
    ``gateway``, a connected gateway NVE too, an interconnect between the
    VNs and an external network on the gateway's port ext0."""
    ctl, app, client = make(notifier)
    client.ok('POST', '/v1/vns', {'vnid': 5001, 'name': 'blue'})
    client.ok('POST', '/v1/vns', {
        'vnid': 6001, 'name': 'red', 'service': 'l3', 'encap': 'gre',
        'gateway': {'mac': '02:00:00:00:fe:01', 'ips': ['192.168.10.1/24']}})
    client.ok('POST', '/v1/vns', {'vnid': 7001, 'name': 'spare'})
    for i, dp in enumerate((DP1, DP2, DP3), 1):
        client.ok('PUT', '/v1/nves/' + dp, {'vtep_ip': '10.99.0.%d' % i,
                                            'name': 'hv%d' % i})
        client.ok('PUT', '/v1/nves/%s/ports/tap1' % dp, {'vnid': 5001})
    client.ok('PUT', '/v1/nves/%s/ports/trunk0' % DP1,
              {'vlans': {'10': 5001, '20': 6001}})
    ctl.connect(1)
    ctl.connect(2)
    ctl.learn(1, 'tap1', MAC1, '192.168.1.1')
    ctl.learn(2, 'tap1', MAC2, '192.168.1.2')
    ctl.learn(1, 'trunk0', MAC3, '192.168.10.5', vlan=20)
    if gateway:
        client.ok('PUT', '/v1/nves/' + DPGW, {'vtep_ip': '10.99.0.255',
                                              'role': 'gateway'})
        ctl.connect(0xff, GW_PORTS)
        # A gateway may have access ports of its own.
        client.ok('PUT', '/v1/nves/%s/ports/tap1' % DPGW, {'vnid': 5001})
        client.ok('PUT', '/v1/interconnects/blue-spare', {
            'gateway': DPGW, 'vns': [5001, 7001],
            'allowed_macs': [MAC1]})
        client.ok('PUT', '/v1/externals/lab', {
            'gateway': DPGW, 'port': 'ext0', 'vlans': {'100': 5001}})
    return ctl, app, client
