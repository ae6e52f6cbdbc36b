# Two entry points, each doing the whole set-up on a fresh Debian machine:
#   make test   system packages, virtualenv, pip install, then the test suite
#   make demo   the same set-up, then `sjtui demo`
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# rt-tests: cyclictest, which bench/engine.py runs beside its JACK graph (how late this machine wakes
# a real-time thread); libjack-jackd2-dev: JACK's headers, for the C JACK clients of the audio
# input and the MIDI output (sjtui/audio/_jackinput.c, sjtui/midi/_jackmidi.c; optional: without
# them the input runs through PortAudio and the MIDI output through JACK-Client's Python callback)
APT_PACKAGES := jackd2 libportaudio2 libsndfile1 fluidsynth timgm6mb-soundfont fluid-soundfont-gm tmux \
                python3-venv python3-dev build-essential rt-tests libjack-jackd2-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMPS := .stamps

.PHONY: test demo setup system venv bench clean

test: setup
	$(BIN)/python -m pytest -q

# Without a sound card (no /dev/snd) and no JACK server running, `sjtui demo` starts a private
# JACK dummy server for itself (sjtui/audio/jack_server.py: a small pool of fixed names, so a demo
# that was killed does not leak one of JACK's 8 server slots; jackd dies with the demo).
demo: setup
	$(BIN)/sjtui demo $(DEMO_ARGS)

bench: setup
	$(BIN)/python bench/analysis.py

setup: system venv

system: $(STAMPS)/system
$(STAMPS)/system: Makefile
	@mkdir -p $(STAMPS)
	@if command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing system packages: $$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	else \
	  echo "not a Debian system: install $(APT_PACKAGES) with your package manager"; \
	fi
	@touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml setup.py sjtui/_jackclient.h sjtui/audio/_jackinput.c sjtui/midi/_jackmidi.c
	@mkdir -p $(STAMPS)
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip wheel setuptools
	$(BIN)/python -m pip install -q torch==2.13.0  # pinned: the local CPU wheel; never let pip pick a torch
	$(BIN)/python -m pip install -q -e '.[test,train]'
	@touch $@

clean:
	rm -rf $(STAMPS) $(VENV) build *.egg-info
