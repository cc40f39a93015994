#!/usr/bin/env bash
# Print the URL of a Redis for the shared-state tests, starting one when none answers.
#
# 1. A Redis already answering on 127.0.0.1:6379 (or $RELAYKIT_REDIS_USUAL_PORT) is used as it
#    is: every test uses keys of its own.
# 2. Else one this script started earlier (its URL is kept in $state) is used if it answers.
# 3. Else redis-server is started on a free loopback port, installed first from the system's
#    packages (apt-get) when the binary is missing, as on a fresh CI machine.
# The tests also need the redis-server binary itself (they start private servers to kill).
# Diagnostics go to stderr; on failure nothing is printed and the tests fail with the advice.
set -u
state=${RELAYKIT_REDIS_STATE:-/tmp/relaykit-test-redis.url}
usual=${RELAYKIT_REDIS_USUAL_PORT:-6379}  # the port a Redis usually answers on

answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2" && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 \
    && [[ $reply == +PONG* ]]) 2>/dev/null
}

if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "ensure-redis: installing redis-server (apt-get)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } \
      >/tmp/relaykit-redis-install.log 2>&1 \
      || echo "ensure-redis: apt-get could not install redis-server (see /tmp/relaykit-redis-install.log)" >&2
  else
    echo "ensure-redis: no redis-server binary; install it (apt-get install redis-server)" >&2
  fi
fi

if answers 127.0.0.1 "$usual"; then echo "redis://127.0.0.1:$usual/0"; exit 0; fi
if [ -r "$state" ]; then
  port=$(sed -n 's|^redis://127.0.0.1:\([0-9]*\)/0$|\1|p' "$state")
  if [ -n "$port" ] && answers 127.0.0.1 "$port"; then cat "$state"; exit 0; fi
fi
if ! command -v redis-server >/dev/null 2>&1; then exit 0; fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=/tmp/relaykit-redis-$port.log
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir /tmp --logfile "$log" >/dev/null
for _ in $(seq 50); do
  if answers 127.0.0.1 "$port"; then
    echo "redis://127.0.0.1:$port/0" | tee "$state"
    exit 0
  fi
  sleep 0.1
done
echo "ensure-redis: redis-server started but does not answer on port $port (see $log)" >&2
