"""Every command the README shows, run as written.

The README's fenced ``sh`` blocks are read from the file itself and run
here, unchanged, from the repository root: an operator's session against
a private Open vSwitch (``ovs-vsctl`` finds it through ``OVS_RUNDIR``), and
a testbed of one's own with the app in a second process.  They run in
network namespaces of their own (so ``127.0.0.1:6653``, ``:8080`` and
``:6699`` are ours alone) and the operator's session in a mount namespace
whose ``/etc`` and ``/var/lib`` are overlays (``/etc/nvo3/nvo3.conf`` is the
README's ``ini`` block, written there; nothing reaches the real ones).
``make demo`` and ``make test`` are the two blocks not run here: the demo
is tests/integration/test_demo.py, the tests are this suite.
"""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.ovs import OvsInstance

from conftest import ROOT, assert_nothing_left
from namespaces import Namespace, log_problems

pytestmark = pytest.mark.integration
README = os.path.join(ROOT, 'README.md')
RUN_ELSEWHERE = ('make demo', )      # test_demo.py; `make test` is the suite


def blocks(lang):
    """The README's fenced blocks of ``lang``, in order."""
    with open(README) as handle:
        text = handle.read()
    return re.findall(r'^```%s\n(.*?)^```$' % lang, text, re.M | re.S)


def block(start):
    """The one sh block whose first line starts with ``start``."""
    found = [b for b in blocks('sh') if b.startswith(start)]
    assert len(found) == 1, (start, found)
    return found[0]


OPERATOR = ('.venv/bin/nvo3ctl check-config', 'umask 077\ncat > /etc/nvo3/auth.json', '.venv/bin/osken-manager '
            '--ofp-tcp-listen-port 6653 \\\n    --config-file',
            'ovs-vsctl add-br', "J='Content-Type", '.venv/bin/nvo3ctl sync '
            '--wait 10', '.venv/bin/nvo3-register')
TESTBED = ('.venv/bin/osken-manager --ofp-tcp-listen-port 6653 \\\n    '
           '--user-flags', '.venv/bin/nvo3-testbed up',
           '.venv/bin/nvo3ctl sync --wait 30')


def test_every_sh_block_of_the_readme_is_run_here():
    """A command added to the README without being run fails here."""
    starts = OPERATOR + TESTBED + RUN_ELSEWHERE
    for text in blocks('sh'):
        assert sum(text.startswith(s) for s in starts) == 1, text
    assert len(blocks('ini')) == 2          # the sample, and auth on top


def test_the_readmes_topology_example_is_a_valid_topology(tmp_path):
    from nvo3_ryu_app.testbed.topology import load_topology
    example, = blocks('yaml')
    path = tmp_path / 'example.yaml'
    path.write_text(example)
    topo = load_topology(str(path))
    assert [vn.name for vn in topo.vns] == ['blue', 'red']


def test_an_operators_session_as_the_readme_shows_it():
    _require_root_and_tools()
    ns = Namespace(mount_overlays=('/etc', '/var/lib'))
    ovs = None
    try:
        ini, auth_ini = blocks('ini')
        ns.run('mkdir -p /etc/nvo3 && cat > /etc/nvo3/nvo3.conf <<"EOF"\n'
               '%sEOF' % ini)
        out = ns.run(block(OPERATOR[0]))
        assert 'ok, the app can start with it' in out
        app, log = ns.start(block(OPERATOR[2]), 'app.log')
        ns.wait_rest(8080, app)
        ovs = OvsInstance(ns.holder.pid, os.path.join(ns.tmp, 'ovs'))
        ovs.start()
        ns.run(block(OPERATOR[3]), env={'OVS_RUNDIR': ovs.rundir})
        ns.run(block(OPERATOR[4]))
        out = ns.run(block(OPERATOR[5]))
        assert out.startswith('in sync')
        assert re.search(r'0000000000000001\s+hv1\s+10\.0\.0\.1', out), out
        out = ns.run(block(OPERATOR[6]))
        assert 'VN 5001 (blue, l2/vxlan): broadcast frame' in out, out
        assert 'source: 02:00:00:00:00:05' in out
        assert log_problems(log) == []
        # The check refuses what the app would refuse, by name, and the
        # app refuses to start with it.
        ns.stop(app)
        ns.run('echo "audit_intervall = 5" >> /etc/nvo3/nvo3.conf')
        bad = subprocess.run(ns.argv(block(OPERATOR[0])),
                             capture_output=True, text=True)
        assert bad.returncode == 2
        assert "unknown option 'audit_intervall'" in bad.stderr
        refused = subprocess.run(ns.argv(block(OPERATOR[2])),
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
        assert "unknown option 'audit_intervall'" in refused.stdout + \
            refused.stderr
        # Authentication as the README turns it on: its auth file and its
        # lines on top of the sample pass the check; a broken file does not.
        ns.run(block(OPERATOR[1]))
        ns.run('cat > /etc/nvo3/nvo3.conf <<"EOF"\n%s%sEOF' % (
            ini, auth_ini.replace('[nvo3]\n', '', 1)))
        out = ns.run(block(OPERATOR[0]))
        assert 'ok, the app can start with it' in out
        ns.run('echo "{" > /etc/nvo3/auth.json')
        bad = subprocess.run(ns.argv(block(OPERATOR[0])),
                             capture_output=True, text=True)
        assert bad.returncode == 2
        assert 'auth file /etc/nvo3/auth.json' in bad.stderr, bad.stderr
    finally:
        if ovs is not None:
            ovs.stop()
        ns.close()
    assert not os.path.exists('/etc/nvo3/nvo3.conf') or \
        'audit_intervall' not in open('/etc/nvo3/nvo3.conf').read()


def test_a_testbed_of_ones_own_as_the_readme_shows_it():
    _require_root_and_tools()
    ns = Namespace()
    state = '/var/lib/nvo3-testbed'
    existed = os.path.exists(state)
    prefix = None
    try:
        app, log = ns.start(block(TESTBED[0]), 'app.log')
        ns.wait_rest(8080, app)
        testbed, tb_log = ns.start(block(TESTBED[1]), 'testbed.log')
        deadline = time.monotonic() + 120
        text = ''
        while 'testbed is up' not in text:
            assert testbed.poll() is None and time.monotonic() < deadline, \
                text
            time.sleep(0.5)
            tb_log.seek(0)
            text = tb_log.read()
        prefix = re.search(r'testbed run prefix (\w+)', text).group(1)
        out = ns.run(block(TESTBED[2]))
        assert out.startswith('in sync'), out
        assert 'verdict:' in out and 'VN 5001 (blue' in out, out
        ns.stop(testbed)
        # SIGTERM tears the testbed down and exits with 128 + SIGTERM.
        assert testbed.returncode == 128 + signal.SIGTERM
        assert log_problems(log) == []
    finally:
        ns.close()
        if not existed:
            shutil.rmtree(state, ignore_errors=True)
    assert prefix is not None
    assert_nothing_left(prefix)
