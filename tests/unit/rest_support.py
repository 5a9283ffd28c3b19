"""Shared pieces of the REST tests: a controller double and a client.

:class:`FakeCtl` has what rest.make_app needs of NVO3App -- ``authority``,
``change()``, ``now()`` and ``sync_status()`` -- and calls the authority
exactly as NVO3App does (``authority.run(now, func, *args, **kwargs)``), so
a keyword that would collide there collides here too.  NVEs "connect" and
"acknowledge" their flow changes on command, standing in for barriers.
"""

import json

import webob

from nvo3_ryu_app import authority, rest, store

DP1, DP2, DP3 = '0000000000000001', '0000000000000002', '0000000000000003'
MAC1, MAC2, MAC3 = '02:00:00:00:00:01', '02:00:00:00:00:02', \
    '02:00:00:00:00:03'
PORTS = {'vxlan0': 10, 'gre0': 11, 'tap1': 1, 'tap2': 2, 'trunk0': 3}


class FakeCtl:
    def __init__(self):
        self.authority = authority.Authority(store=store.MemoryStore())
        self.clock = 1000.0
        self.connected = set()

    def now(self):
        return self.clock

    def change(self, func, *args, **kwargs):
        return self.authority.run(self.now(), func, *args, **kwargs)

    def connect(self, dpid, ports=None):
        self.connected.add(dpid)
        self.authority.switch_connected(
            dpid, dict(ports or PORTS), '02:aa:00:00:00:%02x' % dpid,
            self.now())

    def learn(self, dpid, port, mac, ip=None, vlan=None):
        self.authority.db.learn(dpid, port, vlan, mac, ip, self.now())
        self.authority.commit(self.now())

    def ack(self):
        """Every connected NVE applies its pending changes (barrier)."""
        for dpid in self.connected:
            table = self.authority.planner.tables.get(dpid)
            if table is not None:
                table.take_changes()

    def audit_now(self, dpid):
        """As the app: None when the NVE is not connected, else the
        comparison of what it holds (here: what was sent) with the plan."""
        if dpid not in self.connected:
            return None
        table = self.authority.planner.table(dpid)
        missing, stale, different = table.diff()
        return {'nve': '%016x' % dpid, 'installed': len(table.installed),
                'desired': len(table.desired),
                'desired_equals_recompute':
                    table.desired == self.authority.planner.expected(dpid),
                'missing': sorted(repr(k) for k in missing),
                'stale': sorted(repr(k) for k in stale),
                'different': sorted(repr(k) for k in different)}

    def sync_status(self, dpid):
        table = self.authority.planner.tables.get(dpid)
        pending = table.pending if table else 0
        up = dpid in self.connected
        return {'connected': up, 'synced': up, 'in_sync': up and not pending,
                'requested_seq': 1 if up else 0,
                'applied_seq': 0 if pending or not up else 1,
                'pending': pending}


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
               'events': ctl.authority.events.seq,
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


def populated(notifier=None):
    """Two VNs, three NVEs (two connected), bindings, tenant systems."""
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
    return ctl, app, client
