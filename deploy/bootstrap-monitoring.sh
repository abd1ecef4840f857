#!/usr/bin/env bash
# Make sure Prometheus, promtool, Alertmanager and amtool are available (Debian's packages
# prometheus and prometheus-alertmanager): `make up` runs them, `make test` checks with them;
# and kcat (Debian's kcat), the operator's Kafka tool the operator story test sends a record with.
# As root with apt-get: installs them non-interactively (their system services are not started).
# Otherwise: says exactly what to install and exits 1.
set -euo pipefail

ok() { [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus-alertmanager ] && [ -x /usr/bin/amtool ] && [ -x /usr/bin/kcat ]; }

if ok; then
  echo "bootstrap-monitoring: $(/usr/bin/prometheus --version 2>&1 | head -n1)"
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  echo "bootstrap-monitoring: installing prometheus prometheus-alertmanager kcat with apt-get ..."
  apt-get update -q >/dev/null
  # policy-rc.d: the packages' own services stay stopped; `make up` runs its own instances on loopback.
  policy=/usr/sbin/policy-rc.d
  created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1; fi
  apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager kcat >/dev/null || true
  [ "$created" -eq 1 ] && rm -f "$policy"
  if ok; then
    echo "bootstrap-monitoring: $(/usr/bin/prometheus --version 2>&1 | head -n1) installed"
    exit 0
  fi
fi

cat >&2 <<MSG
bootstrap-monitoring: Prometheus, Alertmanager and kcat are required (Debian packages prometheus, prometheus-alertmanager, kcat).
Install them, then retry:
  Debian/Ubuntu: sudo apt-get install -y prometheus prometheus-alertmanager kcat
MSG
exit 1
