#!/bin/bash
# Starts the compose broker (the apache/kafka image's own tools, no download): the configuration
# of server.properties plus the listeners' JAAS lines carrying the super user's password, the
# storage formatted once with that user's SCRAM-SHA-512 credential, then the broker in the
# foreground. The password comes from $KAFKA_ADMIN_PASSWORD (`make secrets` writes it to .env).
set -euo pipefail

: "${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD - make secrets writes .env}"
: "${CLUSTER_ID:?set CLUSTER_ID}"
case "$KAFKA_ADMIN_PASSWORD" in
  *'"'* | *'\'*) echo "KAFKA_ADMIN_PASSWORD must not contain quotes or backslashes" >&2; exit 2 ;;
esac

DATA=/var/lib/kafka/data
RUN=/tmp/distretto-kafka   # the generated files hold the password: owner-only, never in the volume
MARKER="$DATA/.distretto-scram-admin"
umask 077
mkdir -p "$RUN"

scram="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\";"
plain="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\" user_admin=\"$KAFKA_ADMIN_PASSWORD\";"
{
  cat /distretto/kafka/server.properties
  echo "listener.name.internal.scram-sha-512.sasl.jaas.config=$scram"
  echo "listener.name.host.scram-sha-512.sasl.jaas.config=$scram"
  echo "listener.name.controller.plain.sasl.jaas.config=$plain"
} > "$RUN/server.properties"
# The healthcheck's client configuration (the super user, on the HOST listener).
{
  echo "security.protocol=SASL_PLAINTEXT"
  echo "sasl.mechanism=SCRAM-SHA-512"
  echo "sasl.jaas.config=$scram"
} > "$RUN/admin.properties"

if [ -f "$DATA/meta.properties" ] && [ ! -f "$MARKER" ]; then
  echo "The kafka-data volume was formatted without the SCRAM super user (an earlier, PLAINTEXT broker)." >&2
  echo "Remove it (docker compose down; docker volume rm distretto_kafka-data) and start again." >&2
  exit 2
fi
if [ ! -f "$DATA/meta.properties" ]; then
  /opt/kafka/bin/kafka-storage.sh format --cluster-id "$CLUSTER_ID" --config "$RUN/server.properties" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"
  touch "$MARKER"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$RUN/server.properties"
