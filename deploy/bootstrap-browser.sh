#!/usr/bin/env bash
# Make sure Debian's Chromium is available for the console's browser tests (Playwright drives it
# through executable_path; Playwright's own browser downloads are never used).
# As root with apt-get: installs the distribution's chromium package non-interactively.
# Otherwise: says exactly what to install and exits 1.
set -euo pipefail

browser="${DISTRETTO_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$browser" ]; then
  echo "bootstrap-browser: $browser present ($("$browser" --version 2>/dev/null | head -n1))"
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  echo "bootstrap-browser: installing chromium with apt-get ..."
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends chromium >/dev/null
  if [ -x "$browser" ]; then
    echo "bootstrap-browser: $browser installed"
    exit 0
  fi
fi

cat >&2 <<MSG
bootstrap-browser: the console's browser tests need Debian's Chromium at $browser (not found).
Install it, then retry:
  sudo apt-get install -y chromium
or point DISTRETTO_CHROMIUM at a Chromium binary.
MSG
exit 1
