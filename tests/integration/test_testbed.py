"""The testbed itself, without the app: real namespaces, private OVS instances,
VXLAN/GRE across the underlay, the controller relay, and cleanup after a crash.

Standalone mode here is also the flood-and-learn baseline that benchmarks
compare the app against, so it is tested as a product, not a stub.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from nvo3_ryu_app.testbed import cleanup, procs, rundir
from nvo3_ryu_app.testbed.topology import parse_topology

pytestmark = pytest.mark.integration

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NOOP_APP = os.path.join(ROOT, "tests", "apps", "noop_app.py")
EMPTY = {"netns": [], "pids": [], "dirs": []}


def _inner(p, name):
    return p.first(name, inner=True)


def test_two_nve_standalone_vxlan_ping_and_capture(testbed):
    tb = testbed("two-nve.yaml", standalone=True)
    prefix, run_dir = tb.prefix, tb.rundir
    assert sorted(procs.netns_list(rundir.netns_prefix(prefix))) == sorted(
        rundir.netns_name(prefix, n) for n in ("underlay", "nve1", "nve2", "h1", "h2", "h3", "h4"))

    cap = tb.start_capture("nve1", "udp port 4789")
    # count=1: the tunnel neighbour cache is pre-filled, the first packet is not lost
    assert tb.ping("h1", "192.168.50.3", count=1, timeout=2)
    assert tb.ping("h2", "192.168.50.4", count=2)
    pkts = cap.stop()

    vx = [p for p in pkts if p.vni is not None]
    assert vx, f"no VXLAN on nve1's underlay link: {[str(p) for p in pkts]}"
    assert {p.vni for p in vx} == {5001}
    assert all(p.first("udp").dst_port == 4789 for p in vx)
    assert {(p.first("ipv4").src, p.first("ipv4").dst) for p in vx} <= {
        ("10.99.0.1", "10.99.0.2"), ("10.99.0.2", "10.99.0.1")}
    echoes = {(_inner(p, "ipv4").src, _inner(p, "ipv4").dst) for p in vx if _inner(p, "icmp")}
    assert ("192.168.50.1", "192.168.50.3") in echoes
    assert ("192.168.50.3", "192.168.50.1") in echoes
    assert ("192.168.50.2", "192.168.50.4") in echoes

    tb.stop()
    assert cleanup.leftovers(prefix) == EMPTY
    assert procs.pids_matching(run_dir + "/") == []


def test_figure1_standalone_vxlan_and_gre(testbed):
    t0 = time.monotonic()
    tb = testbed("figure1.yaml", standalone=True)
    started = time.monotonic() - t0
    prefix = tb.prefix
    cap = tb.start_capture("edge4", "udp port 4789 or ip proto 47")
    assert tb.ping("vm1", "192.168.1.4")     # VN1 edge1 -> edge2
    assert tb.ping("vm1", "192.168.1.7")     # VN1 edge1 -> edge5 (3-NVE mesh, no loop)
    assert tb.ping("vma", "192.168.2.1")     # VN2 edge4 -> edge3, VXLAN 1002
    assert tb.ping("vmc", "192.168.3.2")     # VN3 edge4 -> edge6, GRE 1003
    pkts = cap.stop()
    assert 1002 in {p.vni for p in pkts}
    assert 1003 in {p.gre_key for p in pkts}
    # edge4 is no member of VN1: none of VN1's floods reach it
    assert 1001 not in {p.tunnel_key for p in pkts}
    # VN2 and VN3 meet on edge4 but stay apart: ARP from VN2 finds nothing of VN3
    res = procs.run_in(tb.vm("vma").pid, ["arping", "-c", "2", "-w", "2", "-I", "eth0",
                                          "192.168.3.2"], check=False)
    assert res.returncode != 0, res.stdout
    tb.stop()
    print(f"figure1 standalone: start {started:.2f}s ({tb.timings}), stop {tb.timings['stop']:.2f}s")
    assert cleanup.leftovers(prefix) == EMPTY


TRUNK = """
name: trunk
underlay: {subnet: 10.99.0.0/24}
vns:
  - {vnid: 7001, name: a, service: l2, encap: vxlan}
  - {vnid: 7002, name: b, service: l2, encap: gre}
nves:
  - {name: n1, dpid: "1", vtep_ip: 10.99.0.1}
  - {name: n2, dpid: "2", vtep_ip: 10.99.0.2}
tenant_systems:
  - name: t1
    nve: n1
    vms:
      - {name: x1, vnics: [{mac: "02:00:00:00:0a:01", ip: 10.1.0.1/24, vn: a}]}
      - {name: x2, vnics: [{mac: "02:00:00:00:0b:01", ip: 10.2.0.1/24, vn: b}]}
  - name: t2
    nve: n2
    vms:
      - name: y1
        vnics:
          - {mac: "02:00:00:00:0a:02", ip: 10.1.0.2/24, vn: a, vlan: 10, port: tap1}
          - {mac: "02:00:00:00:0b:02", ip: 10.2.0.2/24, vn: b, vlan: 20, port: tap1}
"""


def test_tagged_trunk_vnics_standalone(testbed):
    tb = testbed(parse_topology(TRUNK, source="trunk"), standalone=True)
    y1 = tb.vm_run("y1", "ip", "-br", "-4", "addr")
    assert "eth0.10" in y1 and "10.1.0.2/24" in y1 and "eth0.20" in y1 and "10.2.0.2/24" in y1
    cap = tb.start_capture("n2")
    assert tb.ping("x1", "10.1.0.2", timeout=2)
    assert tb.ping("x2", "10.2.0.2", timeout=2)
    pkts = cap.stop()
    assert 7001 in {p.vni for p in pkts} and 7002 in {p.gre_key for p in pkts}
    # VN a's ARP for y1's VN b address gets no answer
    res = procs.run_in(tb.vm("x1").pid, ["arping", "-c", "2", "-w", "2", "-I", "eth0",
                                         "10.2.0.2"], check=False)
    assert res.returncode != 0, res.stdout
    flows = tb.nve("n2").ofctl("dump-ports-desc")
    assert "tap1" in flows


def test_restart_vswitchd_keeps_config(testbed):
    tb = testbed("two-nve.yaml", standalone=True)
    assert tb.ping("h1", "192.168.50.3")
    nve = tb.nve("nve2")
    old = nve.vswitchd_pid
    nve.restart_vswitchd()
    assert nve.vswitchd_pid != old and procs.pid_alive(nve.vswitchd_pid)
    assert not procs.pid_alive(old)
    assert "10.99.0.2/24" in nve.ns_run("ip", "-br", "addr", "show", "br-phy")
    assert nve.ofport("h3-0") == 1
    assert tb.ping("h1", "192.168.50.3", count=3)
    assert tb.ping("h4", "192.168.50.2", count=3)


def test_controller_mode_connects_through_relay(testbed, controller):
    ctl = controller(app=NOOP_APP)
    tb = testbed("two-nve.yaml", of_port=ctl.of_port)
    assert tb.wait_connected(20), tb.nve("nve1").vsctl("list", "controller")
    n1 = tb.nve("nve1")
    assert n1.vsctl("get", "bridge", "br-int", "fail_mode").strip() == "secure"
    assert n1.ofport("vxlan0") == 60001 and n1.ofport("gre0") == 60002
    assert [n1.ofport("h1-0"), n1.ofport("h2-0")] == [1, 2]
    assert 'remote_ip=flow' in n1.vsctl("get", "interface", "vxlan0", "options").replace('"', "")
    deadline = time.monotonic() + 10
    while "switch 0000000000000002 connected" not in ctl.log_text():
        assert time.monotonic() < deadline, ctl.log_tail()
        time.sleep(0.1)
    # secure fail mode and an app that installs nothing: no forwarding at all
    assert not tb.ping("h1", "192.168.50.3", timeout=1)

    # a crashed controller comes back and every NVE reconnects within seconds
    ctl.kill()
    deadline = time.monotonic() + 15
    while all(n.controller_connected() for n in tb.nves.values()):
        assert time.monotonic() < deadline, "NVEs never noticed the controller died"
        time.sleep(0.1)
    ctl.start(timeout=60)
    t0 = time.monotonic()
    assert tb.wait_connected(15)
    print(f"reconnected after controller restart in {time.monotonic() - t0:.2f}s")
    tb.stop()
    assert ctl.stop() == []


def test_cleanup_after_sigkilled_run(tmp_path):
    """A run killed with SIGKILL leaves namespaces and daemons; the cleaner
    removes exactly those, and nothing of a live run."""
    from nvo3_ryu_app.testbed.builder import _require_root_and_tools
    _require_root_and_tools()
    prefix = rundir.new_prefix()
    script = f"""
import sys, time
from nvo3_ryu_app.testbed import Testbed, ControllerProcess
ctl = ControllerProcess(app={NOOP_APP!r}).start(timeout=60)
tb = Testbed({os.path.join(ROOT, 'topologies', 'two-nve.yaml')!r}, run_prefix={prefix!r},
             of_port=ctl.of_port).start()
tb.start_capture("nve1")
print("READY", ctl.manifest.prefix, flush=True)
time.sleep(600)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while not line.startswith("READY"):
            assert time.monotonic() < deadline and proc.poll() is None, line
            line = proc.stdout.readline()
        ctl_prefix = line.split()[1]
        before = cleanup.leftovers(prefix)
        assert len(before["netns"]) == 7 and before["dirs"]
        kinds = {procs.proc_cmdline(p).split()[0].rsplit("/", 1)[-1] for p in before["pids"]}
        assert {"ovsdb-server", "ovs-vswitchd", "socat", "tcpdump"} <= kinds, kinds
        assert cleanup.leftovers(ctl_prefix)["pids"]

        runs = cleanup.find_runs()
        assert runs[prefix].alive          # a live run is left alone ...
        subprocess.run([sys.executable, "-m", "nvo3_ryu_app.testbed.cli", "cleanup"],
                       check=True, capture_output=True)
        assert cleanup.leftovers(prefix)["netns"] == before["netns"]

        os.kill(proc.pid, signal.SIGKILL)  # ... until its owner dies
        proc.wait(timeout=10)
        out = subprocess.run([sys.executable, "-m", "nvo3_ryu_app.testbed.cli", "cleanup"],
                             check=True, capture_output=True, text=True).stdout
        assert f"cleaned run {prefix}" in out and f"cleaned run {ctl_prefix}" in out
        assert cleanup.leftovers(prefix) == EMPTY
        assert cleanup.leftovers(ctl_prefix) == EMPTY
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        cleanup.cleanup(prefix=prefix, log=lambda *_: None)
