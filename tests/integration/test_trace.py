"""``nvo3ctl trace`` on real OVS NVEs: the authority's account of a frame
and the switches' own (``ofproto/trace`` run through an operator's command
template) agree; a flow deleted by hand makes them disagree, and the trace
says where; the audit puts it back and they agree again."""

import io
import json
import re

import pytest

from nvo3_ryu_app.cli import nvo3ctl
from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.lab import Lab

from conftest import topology_path

pytestmark = pytest.mark.integration


def ctl(lab, *argv):
    out, err = io.StringIO(), io.StringIO()
    code = nvo3ctl.main(['--url', lab.url(''), '--timeout', '30']
                        + list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_trace_says_when_a_switch_does_not_hold_what_it_should():
    _require_root_and_tools()
    # No audit while the flow is missing: the trace must find it, not the
    # audit's repair hide it.
    lab = Lab(topology_path('two-nve.yaml'),
              extra_ini='audit_interval = 3600\n').start()
    try:
        lab.wait_sync()
        assert lab.ping('h1', '192.168.50.3', count=2)
        lab.wait_sync()
        # The testbed's NVEs keep their OVS in /tmp/nvo3-<prefix>/<nve>:
        # ofproto/trace reaches each through OVS_RUNDIR, as ssh would on
        # a fleet.
        template = ('OVS_RUNDIR=%s/{host} ovs-appctl ofproto/trace {bridge} '
                    '{flow}' % lab.tb.rundir)
        code, out, err = ctl(lab, 'trace', 'blue', '192.168.50.1',
                             '192.168.50.3', '--ofproto-trace', template)
        assert code == 0, (out, err)
        assert 'tunnelled from nve1 to nve2 (VNID 5001)' in out
        assert 'delivered on nve2 port h3-0' in out
        assert out.count('ofproto/trace: agrees') == 2, out
        assert out.rstrip().endswith('the switches agree')

        # By hand, on nve1: the flows of h3's mapping entry in the table
        # that sends the frame into the tunnel.
        code, out, _ = ctl(lab, '--json', 'trace', 'blue', '192.168.50.1',
                           '192.168.50.3')
        hop = json.loads(out)['hops'][0]
        step = next(s for s in hop['tables']
                    if 'h3' in str(s.get('owner')) or '02:00:00:00:50:03'
                    in str(s.get('owner')))
        expect = next(e for e in hop['ofproto_trace']['expect']
                      if e['table'] == step['table'])
        lab.tb.nve('nve1').ofctl('del-flows', 'cookie=%s/-1,table=%d' % (
            expect['cookie'], expect['table']))
        code, out, _ = ctl(lab, 'trace', 'blue', '192.168.50.1',
                           '192.168.50.3', '--ofproto-trace', template)
        assert code == nvo3ctl.DIFFERS, out
        assert re.search(r'ofproto/trace: DISAGREES at step \d+: the '
                         r'authority expects table %d priority %d cookie %s'
                         % (expect['table'], expect['priority'],
                            expect['cookie']), out), out
        assert out.rstrip().endswith('the switches DISAGREE with the '
                                     'authority')

        code, out, _ = ctl(lab, 'audit', 'nve1')
        assert code == nvo3ctl.DIFFERS
        assert re.search(r'missing\s+cookie=%s,table=%d,priority=%d' % (
            expect['cookie'], expect['table'], expect['priority']), out), out
        lab.wait_sync()
        code, out, _ = ctl(lab, 'trace', 'blue', '192.168.50.1',
                           '192.168.50.3', '--ofproto-trace', template)
        assert code == 0 and out.rstrip().endswith('the switches agree'), out
    finally:
        problems = lab.stop()
    assert problems == [], problems
