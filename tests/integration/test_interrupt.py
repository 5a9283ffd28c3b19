"""Ctrl-C (SIGINT) stops the app cleanly, whatever it is doing.

SIGINT is how an operator stops osken-manager and how the testbed stops
the app (ControllerProcess.stop).  Python raises the KeyboardInterrupt in
the code that runs when the signal arrives; under eventlet that may be any
greenlet (a datapath's receive loop, the app's event loop mid-commit), and
the app used to log it as "hub: uncaught exception" or "Exception occurred
during handler processing", lose that greenlet, and keep running until
SIGTERM (what made the demo flaky).  Here the app is kept busy with packet-ins
from real guests on real OVS and interrupted at random moments: it must stop
at once, exit 0, and log no problem.
"""

import random
import subprocess
import time

import pytest

from nvo3_ryu_app.testbed.builder import _require_root_and_tools
from nvo3_ryu_app.testbed.lab import Lab

from conftest import topology_path

pytestmark = pytest.mark.integration

# Frames from ever new source MACs for ``seconds``: each one a packet-in.
STORM = r'''
import socket, sys, time
first, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
t0, i = time.monotonic(), 0
while time.monotonic() - t0 < seconds:
    n = first + i
    i += 1
    src = bytes([0x02, 0x78, (n >> 16) & 255, (n >> 8) & 255, n & 255, 1])
    s.send(b'\xff' * 6 + src + b'\x88\xb5' + b'storm' * 10)
    time.sleep(0.0005)
'''


def test_sigint_while_busy_stops_the_app_at_once_and_cleanly():
    _require_root_and_tools()
    lab = Lab(topology_path('two-nve.yaml'),
              extra_ini='max_macs_per_port = 100000\npunt_rate_pps = 5000\n')
    lab.start()
    try:
        lab.wait_sync()
        for round_ in range(3):
            senders = [subprocess.Popen(
                ['mnexec', '-a', str(lab.tb.vm(vm).pid), 'python3', '-c',
                 STORM, str(100000 * (round_ + 1) + 20000 * k), '3'])
                for k, vm in enumerate(('h1', 'h2', 'h3', 'h4'))]
            try:
                lab.wait_for(lambda: lab.metric_sum(
                    'nvo3_packet_ins_received_total') > 50, what='packet-ins')
                time.sleep(random.uniform(0.0, 1.0))   # a random moment
                before = len(lab.ctl.log_text())
                t0 = time.monotonic()
                lab.ctl.stop()
                took = time.monotonic() - t0
            finally:
                for proc in senders:
                    proc.wait(timeout=30)
            new = lab.ctl.log_text()[before:]
            assert lab.ctl.returncode == 0, new[-3000:]
            assert took < 5.0, took          # SIGINT, not the SIGTERM after
            assert 'Traceback' not in new and 'KeyboardInterrupt' not in new, \
                new[-3000:]
            lab.ctl.start(timeout=60, wait_for=('of', 'rest'))
            lab.tb.reconnect_controllers()
            lab.wait_sync(timeout=60)
    finally:
        problems = lab.stop()
    assert problems == []
