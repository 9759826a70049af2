# make demo / make test: each builds .venv (Python 3.11: bpy 5.0 needs it) if missing, then does its job.
PYTHON311 ?= $(shell command -v python3.11 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install clean

demo: $(STAMP)
	$(VENV)/bin/driveanymesh run demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

install: $(STAMP)

$(PY):
	@if [ -z "$(PYTHON311)" ]; then \
		echo "error: Python 3.11 not found (bpy 5.0 runs only on Python 3.11)."; \
		echo "       Install python3.11, or run: make PYTHON311=/path/to/python3.11"; \
		exit 1; fi
	$(PYTHON311) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first: the pinned CPU wheel; an unpinned resolve would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,cluster]'
	# LPIPS's own linear-layer weights; without its declared torchvision (whose wheel does not load beside the CPU torch).
	$(PY) -m pip install --quiet --no-deps lpips==0.1.4
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs .pytest_cache
