"""Pieces of the testbed library that need neither root nor namespaces."""

import os
import sys

import pytest

from nvo3_ryu_app.testbed import cleanup, controller, rundir
from nvo3_ryu_app.testbed.controller import ControllerError, ControllerProcess
from nvo3_ryu_app.testbed.nve import parse_flow_line, phy_mac_for

HERE = os.path.dirname(os.path.abspath(__file__))
NOOP_APP = os.path.join(os.path.dirname(HERE), "apps", "noop_app.py")


def test_parse_flow_line():
    f = parse_flow_line(" cookie=0x1f, duration=3.5s, table=2, n_packets=7, n_bytes=420, "
                        "idle_timeout=30, priority=100,tun_id=0x1389,in_port=60001,"
                        "dl_dst=02:00:00:00:50:01 actions=output:1")
    assert (f.table, f.priority, f.cookie, f.n_packets, f.n_bytes, f.idle_timeout) == \
        (2, 100, 0x1F, 7, 420, 30)
    assert f.match == {"tun_id": "0x1389", "in_port": "60001", "dl_dst": "02:00:00:00:50:01"}
    assert f.actions == "output:1"
    g = parse_flow_line(" cookie=0x0, duration=1s, table=0, n_packets=0, n_bytes=0, "
                        "priority=10,arp,arp_tpa=192.168.1.2 actions=set_field:2->reg0,goto_table:1")
    assert g.match == {"arp": "", "arp_tpa": "192.168.1.2"}
    assert g.actions == "set_field:2->reg0,goto_table:1"
    assert parse_flow_line("OFPST_FLOW reply (OF1.3) (xid=0x2):") is None
    assert parse_flow_line(" cookie=0x0, duration=1s, table=0, n_packets=0, n_bytes=0, "
                           "actions=drop").priority == 32768


def test_phy_mac_is_deterministic_and_unicast():
    assert phy_mac_for("10.99.0.1") == "02:99:0a:63:00:01"
    assert int(phy_mac_for("10.99.0.7").split(":")[0], 16) & 1 == 0


def test_prefix_rules():
    assert rundir.check_prefix("ab12") == "ab12"
    for bad in ("", "AB", "a-b", "toolongprefix"):
        with pytest.raises(ValueError):
            rundir.check_prefix(bad)
    p = rundir.new_prefix()
    assert rundir.PREFIX_RE.match(p)
    assert rundir.netns_name(p, "edge1") == f"nvo3-{p}-edge1"


def test_controller_process_runs_an_app_and_stops_cleanly(tmp_path):
    topo = tmp_path / "t.yaml"
    topo.write_text("name: x\n")
    ctl = ControllerProcess(config_file=str(topo), app=NOOP_APP)
    try:
        ini = ctl.write_ini()
        assert "[nvo3]" in ini and f"config_file = {topo}" in ini
        assert f"rest_listen_port = {ctl.rest_port}" in ini
        assert f"rpc_listen_port = {ctl.rpc_port}" in ini
        assert len({ctl.of_port, ctl.rest_port, ctl.rpc_port}) == 3
        ctl.start(timeout=60)
        assert ctl.running and ctl.of_port in controller.listening_ports()
        first = ctl.pid
        ctl.restart(timeout=60)
        assert ctl.running and ctl.pid != first
        ctl.kill()
        assert not ctl.running
        ctl.start(timeout=60)
        assert ctl.stop() == []
        ctl.assert_clean()
        assert f"--ofp-tcp-listen-port {ctl.of_port}" in ctl.log_text()
    finally:
        ctl.close()
    assert not os.path.exists(ctl.rundir)
    assert cleanup.leftovers(ctl.manifest.prefix) == {"netns": [], "pids": [], "dirs": []}


def test_controller_process_fails_fast_when_the_app_dies(tmp_path):
    broken = tmp_path / "broken_app.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    ctl = ControllerProcess(app=str(broken))
    try:
        with pytest.raises(ControllerError, match="exited"):
            ctl.start(timeout=60)
        assert "boom at import" in ctl.log_text()
        assert any("Traceback" in line for line in ctl.stop())
        with pytest.raises(AssertionError, match="Traceback"):
            ctl.assert_clean()
    finally:
        ctl.close(keep_on_problems=False)    # the problem was the point


def test_osken_manager_is_the_venv_one():
    path = controller.osken_manager_path()
    assert os.path.dirname(path) == os.path.dirname(sys.executable) or os.path.exists(path)


HUB_LOG = """loading app nvo3_ryu_app.app
NVE 0000000000000001 synced: 0 installed, 30 missing, 0 stale, 0 different
hub: uncaught exception: Traceback (most recent call last):
  File "/x/os_ken/lib/hub.py", line 188, in _launch
    return func(*args, **kwargs)
  File "/x/nvo3_ryu_app/registration.py", line 109, in listen
    self.server = hub.StreamServer((host, port), self._connection)
OSError: [Errno 98] Address already in use
127.0.0.1 - - [04/Dec/2026 15:36:02] "GET /v1/sync HTTP/1.1" 200 414 0.000404
OFPErrorMsg from 0000000000000002 type=1 code=2 for None
tick failed
Traceback (most recent call last):
  File "/x/a.py", line 1, in f
    g()
KeyError: 3

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/x/a.py", line 5, in g
    h()
ValueError: boom
NVE 0000000000000002 synced: 30 installed, 0 missing, 0 stale, 0 different
"""


def test_problem_records_are_whole_tracebacks():
    got = controller.problem_records(HUB_LOG)
    assert [p.splitlines()[0] for p in got] == [
        "hub: uncaught exception: Traceback (most recent call last):",
        "OFPErrorMsg from 0000000000000002 type=1 code=2 for None",
        "Traceback (most recent call last):"]
    assert got[0].splitlines()[-1] == "OSError: [Errno 98] Address already in use"
    assert len(got[0].splitlines()) == 6
    assert got[1].count("\n") == 0
    assert got[2].splitlines()[-1] == "ValueError: boom"
    assert "KeyError: 3" in got[2] and "During handling" in got[2]
    assert controller.problem_records("all fine\nNVE synced\n") == []


def test_a_controller_with_problems_keeps_its_run_directory(tmp_path, capsys):
    broken = tmp_path / "broken_app.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    ctl = ControllerProcess(app=str(broken))
    with pytest.raises(ControllerError):
        ctl.start(timeout=60)
    try:
        problems = ctl.close()
        assert problems and "RuntimeError: boom at import" in problems[0]
        assert ctl.kept == ctl.rundir and os.path.exists(ctl.log_path)
        assert rundir.load(ctl.manifest.prefix)["kept"] == "app problems"
        err = capsys.readouterr().err
        assert "RuntimeError: boom at import" in err and ctl.rundir in err
        # Stale (its owner gone) but kept: cleanup leaves the directory ...
        data = rundir.load(ctl.manifest.prefix)
        data["owner_pid"], data["owner_start"] = 2 ** 22 + 1, 0
        ctl.manifest.data.update(data)
        ctl.manifest.save()
        assert ctl.manifest.prefix in cleanup.find_runs()
        cleanup.cleanup(log=lambda *_: None)
        assert os.path.exists(ctl.rundir)
    finally:
        # ... until that run is named.
        cleanup.cleanup(prefix=ctl.manifest.prefix, log=lambda *_: None)
    assert not os.path.exists(ctl.rundir)
