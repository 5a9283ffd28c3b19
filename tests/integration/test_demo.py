"""The main job (README's `make demo`): it works, it is quick, and it leaves
nothing behind, also when it is interrupted half-way."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from nvo3_ryu_app.testbed import cleanup
from nvo3_ryu_app.testbed.builder import _require_root_and_tools

from conftest import ROOT, assert_nothing_left

pytestmark = pytest.mark.integration
DEMO = os.path.join(ROOT, 'mininet', 'demo.py')


def _prefixes(text):
    found = re.search(r'run prefixes: testbed (\w+), controller (\w+)', text)
    assert found, text
    return found.groups()


def test_demo_runs_figure1_and_cleans_up():
    _require_root_and_tools()
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, DEMO], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    took = time.monotonic() - t0
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for line in ('reachability and isolation         yes',
                 'ARP answered by the ingress NVE    yes',
                 'BUM only to member NVEs            yes',
                 'writes need an admin token         yes',
                 'app logged no error                yes'):
        assert line in run.stdout
    assert took < 180, took
    for prefix in _prefixes(run.stdout):
        assert_nothing_left(prefix)


def test_interrupted_demo_leaves_nothing_behind():
    _require_root_and_tools()
    proc = subprocess.Popen([sys.executable, DEMO], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    out = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            out.append(line)
            if 'connected and in sync' in line:
                break
            assert time.monotonic() < deadline, ''.join(out)
        proc.send_signal(signal.SIGINT)        # Ctrl-C in the middle
        rest, _ = proc.communicate(timeout=120)
        out.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = ''.join(out)
    assert 'tearing down' in text, text[-3000:]
    for prefix in _prefixes(text):
        assert_nothing_left(prefix)
    assert cleanup.find_runs().keys().isdisjoint(_prefixes(text))
