#!/usr/bin/env bash
# Start PostgreSQL and RabbitMQ on loopback if they are down, and wait until they answer.
set -euo pipefail

wait_port() {  # host port seconds
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    if ((SECONDS > deadline)); then echo "services: $1:$2 did not come up in $3 s" >&2; return 1; fi
    sleep 1
  done
}

if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
wait_port 127.0.0.1 5432 60

if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached
fi
wait_port 127.0.0.1 5672 120
echo "services: PostgreSQL 127.0.0.1:5432 and RabbitMQ 127.0.0.1:5672 are up"
