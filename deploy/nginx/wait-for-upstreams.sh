#!/bin/sh
# nginx resolves the upstream names in nginx.conf once, at start, and refuses to start
# when one does not resolve. In the compose stack the gateways start after nginx (they
# depend on it, so that `compose stop` stops them first and nginx outlives their drain):
# wait until every name in UPSTREAM_HOSTS resolves (at most UPSTREAM_WAIT_S seconds), then
# run the command.
set -eu
deadline=$(( $(date +%s) + ${UPSTREAM_WAIT_S:-120} ))
for host in ${UPSTREAM_HOSTS:-}; do
    until getent hosts "$host" >/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "wait-for-upstreams: $host does not resolve; starting anyway" >&2
            break
        fi
        sleep 0.2
    done
done
exec "$@"
