#!/usr/bin/env bash
# Make sure Java 17+ and Maven are available (the embedded Kafka's only system prerequisites).
# As root with apt-get: installs openjdk-17-jre-headless + maven non-interactively.
# Otherwise: says exactly what to install and exits 1.
set -euo pipefail

java_major() {
  command -v java >/dev/null 2>&1 || { echo 0; return; }
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9][0-9.]*\).*/\1/p' | head -n1)
  case "$v" in
    1.*) v=${v#1.}; echo "${v%%.*}" ;;
    "") echo 0 ;;
    *) echo "${v%%.*}" ;;
  esac
}

ok() { [ "$(java_major)" -ge 17 ] && command -v mvn >/dev/null 2>&1; }

if ok; then
  echo "bootstrap-java: java $(java_major) and $(command -v mvn) present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  echo "bootstrap-java: installing openjdk-17-jre-headless maven with apt-get ..."
  apt-get update -q >/dev/null
  jre=openjdk-17-jre-headless
  apt-cache show "$jre" >/dev/null 2>&1 || jre=default-jre-headless  # distros without JDK 17
  apt-get install -y -q --no-install-recommends "$jre" maven >/dev/null
  if ok; then
    echo "bootstrap-java: java $(java_major) and $(command -v mvn) installed"
    exit 0
  fi
fi

cat >&2 <<MSG
bootstrap-java: Java 17+ and Maven are required (found: java major $(java_major), mvn: $(command -v mvn || echo none)).
Install them, then retry:
  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless maven
  Fedora/RHEL:   sudo dnf install -y java-17-openjdk-headless maven
  macOS:         brew install openjdk@17 maven
MSG
exit 1
