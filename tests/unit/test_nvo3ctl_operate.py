"""nvo3ctl's operators' questions against the REST app over HTTP: what a
write would do (--dry-run), a frame's fate (trace, and a switch's own
answer through --ofproto-trace), audit, cookie, check-config, completion,
and exit statuses scripts can use."""

import io
import subprocess
import sys
import textwrap
import threading
from wsgiref import simple_server

from test_nvo3ctl import (QuietHandler, ThreadingServer, run,  # noqa
                          served)
from nvo3_ryu_app.authority.owners import TsOwner, cookie_for
from nvo3_ryu_app.cli import nvo3ctl
from rest_support import DP1, MAC1, make


def test_dry_run_prints_flow_mods_and_changes_nothing(served):
    ctl, url = served
    ctl.ack()
    before = ctl.authority.event_log.seq
    code, out, _ = run(url, 'bind', 'hv1', 'tap2', '--vnid', '5001',
                       '--dry-run')
    assert code == 0, out
    assert out.startswith('dry run of BindPort: nothing was changed')
    assert 'hv1 (%s):' % DP1 in out
    assert 'add cookie=0x' in out and 'in_port=2' in out
    assert ctl.authority.event_log.seq == before
    code, out, _ = run(url, 'nve', 'hv1')
    assert 'tap2' not in out
    code, out, _ = run(url, 'delete-vn', '5001', '--dry-run')
    assert code == 0 and '- mapping entry %s' % MAC1 in out
    code, out, _ = run(url, 'vn', '5001')
    assert code == 0


def test_trace_prints_the_fate_and_exits_4_when_the_switch_differs(
        served, tmp_path):
    ctl, url = served
    ctl.ack()
    code, out, _ = run(url, 'trace', 'blue', '192.168.1.1', '192.168.1.2')
    assert code == 0, out
    assert 'verdict:\n  delivered on hv2 port tap1' in out
    assert 'tunnelled from hv1 to hv2 (VNID 5001)' in out
    # A "switch" whose answer is the authority's own expectations agrees;
    # one that fails disagrees.
    code, out, _ = run(url, 'trace', 'blue', '192.168.1.1', '192.168.1.2',
                       '--ofproto-trace', 'false')
    assert code == nvo3ctl.DIFFERS
    assert 'the switches DISAGREE with the authority' in out
    code, _, err = run(url, 'trace', 'blue', '192.168.1.1', '192.168.1.2',
                       '--ofproto-trace', 'x {nothing}')
    assert code == 2 and 'bad template' in err


def test_ofproto_trace_output_is_read_table_by_table():
    text = textwrap.dedent('''\
        Flow: in_port=1,vlan_tci=0x0000,dl_src=02:00:00:00:00:01

        bridge("br-int")
        ----------------
         0. in_port=1, priority 100, cookie 0x4e56000000000001
            goto_table:2
         2. priority 0, cookie 0x4e56000000000002
            drop
         4. No match.
            drop

        Final flow: unchanged
        ''')
    assert nvo3ctl.parse_ofproto_trace(text) == [
        (0, 100, 0x4e56000000000001), (2, 0, 0x4e56000000000002),
        (4, None, None)]


def test_audit_and_cookie_exit_4_on_what_the_switch_does_not_match(served):
    ctl, url = served
    ctl.ack()
    assert run(url, 'audit', 'hv1')[0] == 0
    switch = ctl.nves.switches[1]
    flow = next(f for f in switch.flows() if f.table == 4
                and f.priority == 200)
    switch.apply([('delete', flow)], verify_idempotent=False)
    code, out, _ = run(url, 'audit')
    assert code == nvo3ctl.DIFFERS
    assert 'missing   cookie=0x%x,table=4,priority=200,' % flow.cookie in out
    code, out, _ = run(url, 'cookie', '0x%x' % cookie_for(
        TsOwner(5001, MAC1)))
    assert code == 0 and MAC1 in out
    code, out, _ = run(url, 'cookie', '0x%x' % cookie_for(
        TsOwner(5001, '02:00:00:00:00:77')))
    assert code == nvo3ctl.DIFFERS and 'unknown / stale' in out


def test_sync_without_a_connected_nve_is_a_failure_with_its_reason():
    _, app, _ = make()
    server = simple_server.make_server('127.0.0.1', 0, app, ThreadingServer,
                                       QuietHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,),
                     daemon=True).start()
    try:
        code, out, _ = run('http://127.0.0.1:%d' % server.server_port,
                           'sync')
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1 and out.startswith('NOT in sync: no NVE is known')


def check_config(path):
    """nvo3ctl check-config's exit status."""
    return nvo3ctl.main(['check-config', str(path)], io.StringIO(),
                        io.StringIO())


def test_check_config_names_misspelled_options_and_inline_comments(
        tmp_path):
    fabric = tmp_path / 'fabric.yaml'
    fabric.write_text('vns:\n  - {vnid: 5001, name: blue}\n')
    good = tmp_path / 'good.conf'
    good.write_text('[nvo3]\nconfig_file = %s\nstate_dir = %s\n'
                    'audit_interval = 5\n' % (fabric, tmp_path / 'state'))
    run_ = [sys.executable, '-m', 'nvo3_ryu_app.checkconfig']
    ok = subprocess.run(run_ + [str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert 'ok, the app can start with it' in ok.stdout
    bad = tmp_path / 'bad.conf'
    bad.write_text('[nvo3]\naudit_intervall = 5\n'
                   'state_dir = /var/lib/nvo3   ; the store\n')
    no = subprocess.run(run_ + [str(bad)], capture_output=True, text=True)
    assert no.returncode == 2
    assert ("bad.conf:2: unknown option 'audit_intervall' in [nvo3] "
            "(did you mean 'audit_interval'?)") in no.stderr
    assert 'bad.conf:3: state_dir' in no.stderr and 'inline comment' in \
        no.stderr
    fabric.write_text('vns:\n  - {vnid: 5001, name: blue, service: l9}\n')
    no = subprocess.run(run_ + [str(good)], capture_output=True, text=True)
    assert no.returncode == 2 and str(fabric) in no.stderr
    assert check_config(tmp_path / 'missing.conf') == 2


def test_bash_completion_is_generated_from_the_parser():
    script = nvo3ctl.bash_completion(nvo3ctl.parser())

    def complete(*words):
        line = ' '.join(words)
        probe = subprocess.run(['bash', '-c', script + '\n' + (
            'COMP_WORDS=(%s); COMP_CWORD=%d; _nvo3ctl; '
            'echo "${COMPREPLY[@]}"' % (line, len(words) - 1))],
            capture_output=True, text=True, check=True)
        return probe.stdout.split()

    assert complete('nvo3ctl', 'tr') == ['trace']
    assert 'check-config' in complete('nvo3ctl', "''")
    assert set(complete('nvo3ctl', 'bind', 'hv1', '--')) >= {
        '--dry-run', '--override', '--vnid', '--vlan'}
    assert complete('nvo3ctl', '--url', 'x', 'trace', '--of') == [
        '--ofproto-trace']


def test_mapping_tables_name_the_nves(served):
    _, url = served
    code, out, _ = run(url, 'mappings', '5001')
    header, first = out.splitlines()[:2]
    assert 'NVE NAME' in header and MAC1 in first
    assert first.split()[first.split().index(DP1) + 1] == 'hv1'
    code, out, _ = run(url, 'lookup', '--mac', MAC1)
    assert 'hv1' in out.splitlines()[1]
