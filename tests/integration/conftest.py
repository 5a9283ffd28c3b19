"""Shared fixtures for tests that build real testbeds (root, OVS, Mininet).

Requirements are checked when a test *uses* a factory, inside the test body,
so a machine without root or Open vSwitch makes these tests FAIL rather than
skip or error out in setup: CI must never go green by not running them.
"""

import os

import pytest

from nvo3_ryu_app.testbed import cleanup
from nvo3_ryu_app.testbed.controller import ControllerProcess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOPOLOGIES = os.path.join(ROOT, "topologies")
NOOP_APP = os.path.join(ROOT, "tests", "apps", "noop_app.py")


def topology_path(name: str) -> str:
    return os.path.join(TOPOLOGIES, name)


@pytest.fixture
def testbed():
    """Factory: ``testbed("two-nve.yaml", standalone=True)`` -> a started Testbed.

    Accepts a file name under topologies/, a path, or a Topology. Every testbed
    made here is stopped at teardown, whatever the test did.
    """
    from nvo3_ryu_app.testbed.builder import Testbed, _require_root_and_tools

    made = []

    def make(topology, **kwargs):
        _require_root_and_tools()
        if isinstance(topology, str) and not os.path.exists(topology):
            topology = topology_path(topology)
        tb = Testbed(topology, **kwargs)
        made.append(tb)
        return tb.start()

    yield make
    for tb in reversed(made):
        tb.stop()


@pytest.fixture
def controller():
    """Factory: ``controller(app=..., config_file=...)`` -> a started ControllerProcess,
    closed at teardown."""
    made = []

    def make(**kwargs):
        ctl = ControllerProcess(**kwargs)
        made.append(ctl)
        return ctl.start(timeout=60)

    yield make
    for ctl in reversed(made):
        ctl.close()


def assert_nothing_left(prefix: str) -> None:
    """No namespace, process or directory of run ``prefix`` survives."""
    assert cleanup.leftovers(prefix) == {"netns": [], "pids": [], "dirs": []}
