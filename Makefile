# Targets run as root on Debian 12. `make test` is what CI runs (.ci/run).
PY := .venv/bin/python

.PHONY: setup demo test unit integration clean-testbed

setup:
	bash tools/install-deps.sh

demo: setup
	$(PY) mininet/demo.py

test: setup
	$(PY) -m pytest tests -v -p no:cacheprovider

unit: setup
	$(PY) -m pytest tests/unit -v -p no:cacheprovider

integration: setup
	$(PY) -m pytest tests/integration -v -p no:cacheprovider

clean-testbed:
	@if [ -x $(PY) ]; then $(PY) -m nvo3_ryu_app.testbed.cli cleanup; \
	else /usr/bin/python3 -m nvo3_ryu_app.testbed.cli cleanup; fi
