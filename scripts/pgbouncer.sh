#!/usr/bin/env bash
# PgBouncer in transaction pooling mode on loopback, in front of the PostgreSQL of services.sh.
#   scripts/pgbouncer.sh start DIR PORT [POOL_SIZE]   generate DIR/pgbouncer.ini, start it, wait for PORT
#   scripts/pgbouncer.sh stop DIR                     stop the one started in DIR
# Installs the Debian package when it is missing. Any user name is passed through unauthenticated
# (auth_type=trust; PostgreSQL's own loopback rules apply), every database name is forwarded.
set -euo pipefail
action=${1:?start|stop}
dir=${2:?directory}

if [ "$action" = stop ]; then
  if [ -f "$dir/pgbouncer.pid" ]; then
    kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -f "$dir/pgbouncer.pid" ] || break; sleep 0.1; done
  fi
  exit 0
fi

port=${3:?port}
pool=${4:-20}
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
  echo "pgbouncer: installing the Debian package"
  if ! apt-get install -y pgbouncer >/dev/null 2>&1; then
    apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >/dev/null
  fi
fi
bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
mkdir -p "$dir"
# PgBouncer 1.21+ keeps protocol-level prepared statements across transactions; older ones need
# FUSION_JOBS_PREPARED_STATEMENTS off. DIR/prepared_statements says which (on/off).
version=$("$bin" --version | head -n1 | grep -oE '[0-9]+\.[0-9]+' | head -n1)
prepared=off
if [ "$(printf '%s\n1.21\n' "$version" | sort -V | head -n1)" = 1.21 ]; then prepared=on; fi
cat >"$dir/userlist.txt" <<EOF
"postgres" ""
"$(id -un)" ""
EOF
cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=${PGPORT_DIRECT:-5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $pool
max_client_conn = 1000
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
if [ "$prepared" = on ]; then echo "max_prepared_statements = 200" >>"$dir/pgbouncer.ini"; fi
echo "$prepared" >"$dir/prepared_statements"
user=()
if [ "$(id -u)" = 0 ]; then  # PgBouncer refuses to run as root
  chown -R postgres "$dir"
  user=(-u postgres)
fi
"$bin" -d "${user[@]}" "$dir/pgbouncer.ini"
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "pgbouncer: $("$bin" --version | head -n1) on 127.0.0.1:$port (pool_mode=transaction, pool $pool, prepared statements $prepared)"
    exit 0
  fi
  sleep 0.1
done
echo "pgbouncer: did not come up on 127.0.0.1:$port; its log:" >&2
cat "$dir/pgbouncer.log" >&2 || true
exit 1
