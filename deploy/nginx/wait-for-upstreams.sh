#!/bin/bash
# nginx resolves the upstream names in nginx.conf once, at start, and refuses to start
# when one does not resolve; and a gateway that refuses nginx's first connections is
# marked failed for fail_timeout (10 s), in each nginx worker. In the compose stack the
# gateways start after nginx (they depend on it, so that `compose stop` stops them first
# and nginx outlives their drain): wait until every HOST:PORT in UPSTREAMS accepts a
# connection (at most UPSTREAM_WAIT_S seconds), then run the command.
set -eu
deadline=$(( $(date +%s) + ${UPSTREAM_WAIT_S:-120} ))
for upstream in ${UPSTREAMS:-}; do
    host=${upstream%:*} port=${upstream##*:}
    until timeout 1 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "wait-for-upstreams: $upstream does not answer; starting anyway" >&2
            break
        fi
        sleep 0.2
    done
done
exec "$@"
