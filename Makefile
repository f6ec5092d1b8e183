# The README's two commands: `make demo` and `make test`. Each sets up what it
# needs first (idempotent), so both work on a fresh Debian 12 machine as root.
# Every target runs on ZynClone's own Node.js 24, which setup installs into
# .toolchain/node (see scripts/toolchain.sh), never on the machine's node.
export PATH := $(CURDIR)/.toolchain/node/bin:$(PATH)
SHELL := /bin/bash

.PHONY: setup build demo test test-fresh test-xen bench lint clean deb test-deb

setup:
	@bash scripts/setup.sh

# The live save helper (helpers/livesave) is C against libxen-dev, which setup
# installs; the console's splice helper (helpers/console-splice) needs only libc.
build: setup
	@npm run --silent build
	@$(MAKE) -s -C helpers/livesave
	@$(MAKE) -s -C helpers/console-splice

demo: build
	@bash scripts/demo.sh

lint: setup
	@npm run --silent lint
	@npm run --silent typecheck

test: build lint
	@npm test

# `make test` and `make demo` in a fresh Debian 12 root, as a new user would.
test-fresh:
	@bash scripts/test-fresh.sh

test-xen: build
	@bash xen-lane/run.sh

# The Debian package (dist/zynclone_<version>_amd64.deb) and its install test
# in a clean Debian 12 root; see docs/packaging.md.
deb: build
	@bash scripts/build-deb.sh

test-deb: deb
	@bash scripts/test-deb.sh

bench: build
	@node dist/bench/run.js

clean:
	rm -rf dist
