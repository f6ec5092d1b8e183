# The README's two commands: `make demo` and `make test`. Each sets up what it
# needs first (idempotent), so both work on a fresh Debian 12 machine as root.
.PHONY: setup build demo test test-xen bench lint clean

setup:
	@bash scripts/setup.sh

build: setup
	@npm run --silent build

demo: build
	@bash scripts/demo.sh

lint: setup
	@npm run --silent lint
	@npm run --silent typecheck

test: build lint
	@npm test

test-xen: build
	@bash xen-lane/run.sh

bench: build
	@node dist/bench/run.js

clean:
	rm -rf dist
