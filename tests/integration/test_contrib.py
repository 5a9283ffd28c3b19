"""contrib/ as an operator installs it: the systemd unit's commands run as
written (the package in /opt/nvo3/venv, the example configuration in
/etc/nvo3, all in namespaces of their own), the example configuration is
what ``check-config`` accepts, and every series the Grafana dashboard and
the Prometheus alert rules use is in the running app's ``/metrics``."""

import configparser
import json
import os
import re

import pytest
import yaml

from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.ovs import OvsInstance

from conftest import ROOT
from namespaces import Namespace, log_problems

pytestmark = pytest.mark.integration
CONTRIB = os.path.join(ROOT, 'contrib')
SERIES = re.compile(r'\bnvo3_[a-z0-9_]+')


def unit():
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read(os.path.join(CONTRIB, 'systemd', 'nvo3-authority.service'))
    return parser


def dashboard_exprs():
    with open(os.path.join(CONTRIB, 'grafana', 'nvo3-dashboard.json')) as f:
        dash = json.load(f)
    ids = [p['id'] for p in dash['panels']]
    assert len(ids) == len(set(ids)) and dash['uid']
    return [t['expr'] for p in dash['panels'] for t in p['targets']]


def alert_rules():
    with open(os.path.join(CONTRIB, 'prometheus', 'alerts.yml')) as f:
        doc = yaml.safe_load(f)
    rules = [r for g in doc['groups'] for r in g['rules']]
    for rule in rules:
        assert set(rule) <= {'alert', 'expr', 'for', 'labels', 'annotations'}
        assert rule['labels']['severity'] in ('critical', 'warning', 'info')
        assert rule['annotations']['summary'], rule
    return rules


def test_the_alerts_cover_what_operators_page_on():
    exprs = {r['alert']: r['expr'] for r in alert_rules()}
    for series in ('nvo3_nve_connected', 'nvo3_nve_in_sync',
                   'nvo3_packet_ins_dropped_total', 'nvo3_conflicts_total',
                   'nvo3_frozen_addresses'):
        assert any(series in e for e in exprs.values()), series


def test_the_unit_the_example_config_and_every_series_on_a_running_app():
    _require_root_and_tools()
    service = unit()['Service']
    ns = Namespace(mount_overlays=('/etc', '/var/lib', '/opt'))
    ovs = None
    try:
        ns.run('mkdir -p /etc/nvo3 /opt/nvo3 && ln -s %s/.venv '
               '/opt/nvo3/venv && cp contrib/nvo3.conf contrib/fabric.yaml '
               '/etc/nvo3/' % ROOT)
        out = ns.run(service['ExecStartPre'])
        assert 'ok, the app can start with it' in out
        app, log = ns.start(service['ExecStart'], 'app.log')
        ns.wait_rest(8080, app)
        # hv1 (dpid 1 of contrib/fabric.yaml) connects; hv2 stays away.
        ovs = OvsInstance(ns.holder.pid, os.path.join(ns.tmp, 'ovs'))
        ovs.start()
        ns.run('ovs-vsctl add-br br-int -- set bridge br-int '
               'datapath_type=netdev fail-mode=secure protocols=OpenFlow13 '
               'other-config:datapath-id=0000000000000001 && ovs-vsctl '
               'add-port br-int vxlan0 -- set interface vxlan0 type=vxlan '
               'options:remote_ip=flow options:key=flow && ovs-vsctl '
               'set-controller br-int tcp:127.0.0.1:6653',
               env={'OVS_RUNDIR': ovs.rundir})
        out = ns.run('.venv/bin/nvo3ctl sync --wait 20 || true')
        assert 'hv1' in out and re.search(r'hv2\s+down', out), out
        ns.run('.venv/bin/nvo3-register --server 127.0.0.1:6699 register '
               '--nve hv1 --port tap1 --mac 02:00:00:00:00:05 --vnid 5001')
        metrics = ns.run('curl -sf localhost:8080/metrics')
        names = {line.split('{')[0].split(' ')[0]
                 for line in metrics.splitlines()
                 if line and not line.startswith('#')}
        used = set()
        for expr in dashboard_exprs() + [r['expr'] for r in alert_rules()]:
            used |= set(SERIES.findall(expr))
        assert used - names == set()
        assert 'nvo3_nve_connected{name="hv1",nve="0000000000000001"} 1.0' \
            in metrics
        assert 'nvo3_nve_connected{name="hv2",nve="0000000000000002"} 0.0' \
            in metrics
        assert re.search(r'nvo3_rpc_requests_total\{method="associate",'
                         r'outcome="ok"\} 1\.0', metrics), metrics
        assert re.search(r'# TYPE nvo3_nve_packet_ins_total counter|'
                         r'# TYPE nvo3_nve_packet_ins counter', metrics)
        assert 'nvo3_build_info{' in metrics
        # docs/operating.md: memory given back after bursts (heaptrim.py)
        assert {'nvo3_heap_trims_total', 'nvo3_heap_trimmed_bytes_total',
                'nvo3_heap_trim_seconds_total'} <= names
        assert log_problems(log) == []
        # The unit's check stops a start with a misspelled option.
        ns.run('echo "audit_intervall = 5" >> /etc/nvo3/nvo3.conf')
        bad = ns.run('%s 2>&1 && exit 1 || echo refused' %
                     service['ExecStartPre'])
        assert "unknown option 'audit_intervall'" in bad and 'refused' in bad
    finally:
        if ovs is not None:
            ovs.stop()
        ns.close()
