#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 for the shared-state tests. Starts a throwaway
# redis-server when none answers and the binary exists; otherwise says how to get one. Never
# fails by itself: the Redis tests fail with this advice when Redis is missing.
set -u
port=6379
answers() { (exec 3<>/dev/tcp/127.0.0.1/$port && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 && [[ $reply == +PONG* ]]) 2>/dev/null; }
if answers; then exit 0; fi
if command -v redis-server >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir /tmp --logfile /tmp/relaykit-redis.log >/dev/null
  for _ in $(seq 50); do answers && exit 0; sleep 0.1; done
  echo "ensure-redis: redis-server started but does not answer on port $port (see /tmp/relaykit-redis.log)"
else
  echo "ensure-redis: no Redis on 127.0.0.1:$port and no redis-server binary;" \
       "install it (apt-get install redis-server) or start one: redis-server --port $port"
fi
