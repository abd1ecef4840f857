#!/usr/bin/env bash
# Make a local PostgreSQL server available for the test suite (CI and developers).
#
# Installs PostgreSQL from Debian's packages when it is missing (root + apt-get),
# starts the cluster, creates the role `distretto` (password `distretto`) and the
# database `distretto_test`, and prints the SQLAlchemy URL on its last line.
# Where it cannot install (not root, no apt-get), it says what to install.
set -euo pipefail

PGUSER_NAME=${DISTRETTO_PG_USER:-distretto}
PGPASS=${DISTRETTO_PG_PASSWORD:-distretto}
PGDB=${DISTRETTO_PG_DATABASE:-distretto_test}
PGPORT=${DISTRETTO_PG_PORT:-5432}

say() { echo "ensure-postgres: $*" >&2; }

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql postgresql-contrib >&2
  else
    say "PostgreSQL is missing. Install it (Debian/Ubuntu: sudo apt-get install postgresql) and run this again."
    exit 1
  fi
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
  say "creating cluster $version/main"
  pg_createcluster "$version" main --port "$PGPORT" >&2
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -q online; then
  say "starting cluster $version/main"
  pg_ctlcluster "$version" main start >&2
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}
for _ in $(seq 1 30); do
  as_postgres psql -p "$port" -qAtc "select 1" >/dev/null 2>&1 && break
  sleep 0.5
done
as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -qAt >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PGUSER_NAME') THEN
    CREATE ROLE $PGUSER_NAME LOGIN PASSWORD '$PGPASS' CREATEDB;
  END IF;
END \$\$;
SQL
if ! as_postgres psql -p "$port" -qAtc "select 1 from pg_database where datname='$PGDB'" | grep -q 1; then
  as_postgres createdb -p "$port" -O "$PGUSER_NAME" "$PGDB"
fi
# Room for many test connections (each test and each service process has its own pool).
if [ "$(as_postgres psql -p "$port" -qAtc "show max_connections")" -lt 300 ]; then
  say "raising max_connections to 300"
  as_postgres psql -p "$port" -qAtc "alter system set max_connections = 300" >&2
  pg_ctlcluster "$version" main restart >&2
  for _ in $(seq 1 30); do
    as_postgres psql -p "$port" -qAtc "select 1" >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
# ssl=disable: loopback needs no TLS, and asyncpg would otherwise negotiate it (a large CPU cost).
echo "postgresql+asyncpg://$PGUSER_NAME:$PGPASS@127.0.0.1:$port/$PGDB?ssl=disable"
