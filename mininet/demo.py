"""TODO (lead): the demo -- start the app (ControllerProcess) and a testbed
(nvo3_ryu_app.testbed.Testbed, e.g. topologies/figure1.yaml), then show the
draft's scenarios. Run by path (`make demo`); this folder must never get an
__init__.py (it would shadow Mininet's own `mininet` package)."""
raise SystemExit("mininet/demo.py is a stub: the demo has not been written yet")
