#!/bin/sh
# Runs `promtool ARGS...`, or reports the test skipped (exit 77) where promtool is missing:
# it comes with Debian's `prometheus` package, which scripts/install-deps installs.
if ! command -v promtool >/dev/null; then
  echo "skipped: promtool is not installed (Debian package prometheus, scripts/install-deps)"
  exit 77
fi
exec promtool "$@"
