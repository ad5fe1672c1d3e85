.PHONY: setup test test-quick lint

setup:
	./setup.sh

test:
	./scripts/test.sh

test-quick:
	./scripts/test.sh -m "not slow"

lint:
	.venv/bin/ruff check src tests benchmarks
