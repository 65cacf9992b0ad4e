#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/ui): Debian's chromium and chromium-driver packages, driven
# by Playwright for Python with /usr/bin/chromium as its executable (Playwright's own browser download is not
# used). Installs only when missing. As root with apt-get (CI, these machines) it installs them; elsewhere it
# prints how to, and the browser tests skip with that reason. In CI (CI=true) a failed install is an error.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium and chromium-driver for the browser tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; then
    exit 0
  fi
  echo "apt-get could not install chromium" >&2
else
  echo "note: chromium is not installed; the browser tests will be skipped." \
    "Install it with: sudo apt-get install chromium chromium-driver" >&2
fi
if [ "${CI:-}" = "true" ]; then
  exit 1
fi
exit 0
