#!/usr/bin/env bash
# kcat: the independent Kafka client the ACL tests use (Debian's `kcat` package).
# As root with apt-get: installs it when missing. Otherwise: says what to install and exits 1.
# (Its librdkafka may be older than the 2.6.1 SCRAM needs against Kafka 4: the tests then run it
# with the librdkafka the confluent-kafka wheel ships, see distretto_dev.testing.kcat.)
set -euo pipefail

if command -v kcat >/dev/null 2>&1; then
  echo "bootstrap-kcat: $(command -v kcat) present"
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  echo "bootstrap-kcat: installing kcat with apt-get ..."
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends kcat >/dev/null
  command -v kcat >/dev/null 2>&1 && exit 0
fi
echo "bootstrap-kcat: kcat is missing; install it (Debian/Ubuntu: 'sudo apt-get install -y kcat'," \
  "macOS: 'brew install kcat')" >&2
exit 1
