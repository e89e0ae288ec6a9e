#!/usr/bin/env bash
# The test command: lint, type-check, then the whole suite (unit, kernel, store, api).
# Kernel tests need root; with CI set, a kernel or PostgreSQL test that would skip fails.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
