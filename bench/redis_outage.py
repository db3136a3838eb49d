#!/usr/bin/env python3
"""Redis outages under load, with figures: for each quota_store.on_error mode (allow, deny,
local) and each kind of outage, Redis goes away for --outage seconds while blocking chat
requests keep coming, then returns. Reported per run: requests answered and refused during
the outage, the time from Redis' return to the first request decided in Redis again and to
the last background write landing, and the settlement check: the tokens Dify reported for
every answered request against Redis' count of the day (equal = nothing lost, nothing
counted twice; with `local`, usage admitted by the local store stays in that replica's
own count by design).

Outages:
  hung      Redis is stopped (SIGSTOP) and continued (SIGCONT): calls time out, data stays.
  down      Redis is killed (SIGKILL) and started again from its append-only file.
  failover  Redis Sentinel fails the master over to its replica (SENTINEL FAILOVER); the
            gateway knows only the sentinel. "During" is from the command to the sentinel
            naming the new master; the settlement check reads the new master.

  bench/redis_outage.py [--build build] [--outage 10] [--out bench/results/redis-outage.json]

Loopback only; one gateway worker; timeout_ms 50 as in the benchmark.
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (the stack helpers: processes, configs, /proc readings)


def cli(port, *args):
    return subprocess.run(['redis-cli', '-p', str(port), *args], capture_output=True, text=True).stdout


def wait_until(what, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if what():
            return True
        time.sleep(0.01)
    return False


def with_sentinel(b, master, mode):
    """A replica of `master` and a sentinel watching both as gw-master (once it knows the replica)."""
    replica_port, sentinel_port = compare.free_port(), compare.free_port()
    replica = b.start('redis-replica', ['redis-server', '--port', str(replica_port), '--bind', '127.0.0.1', '--save', '',
                                        '--appendonly', 'no', '--replicaof', '127.0.0.1', str(master.port),
                                        '--repl-diskless-load', 'swapdb'], replica_port)
    conf = os.path.join(b.dir, f'sentinel-{mode}.conf')
    with open(conf, 'w') as f:
        f.write(f'port {sentinel_port}\nbind 127.0.0.1\ndir {b.dir}\n'
                f'sentinel monitor gw-master 127.0.0.1 {master.port} 1\n')
    sentinel = b.start('sentinel', ['redis-server', conf, '--sentinel'], sentinel_port)
    # The replica's first full sync (a diskless one waits 5 s for other replicas), then the
    # sentinel learning of it from the master's INFO (every 10 s at most).
    if not wait_until(lambda: 'master_link_status:up' in cli(replica_port, 'INFO', 'replication'), 30):
        raise RuntimeError('the replica did not sync')
    if not wait_until(lambda: str(replica_port) in cli(sentinel_port, 'SENTINEL', 'REPLICAS', 'gw-master'), 30):
        raise RuntimeError('the sentinel did not learn of the replica')
    return replica, sentinel


def redis_used(port):
    day = int(time.time()) // 86400
    out = cli(port, 'HGET', 'dify-gateway:{t:bench}:tokens', f'used:{day}').strip()
    return int(out) if out.isdigit() else 0


def store_figures(gw):
    with urllib.request.urlopen(f'http://127.0.0.1:{gw.admin}/admin/usage') as r:
        return json.load(r)['quota_store']


class Load:
    """Client threads sending blocking chat-messages; every answer kept with its time."""

    def __init__(self, port, threads):
        self.port, self.stop, self.results, self.lock = port, False, [], threading.Lock()
        self.examples = {}  # status → the first body seen with it (refusals say why)
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
        body = json.dumps({'inputs': {}, 'query': 'outage', 'response_mode': 'blocking', 'user': 'u'})
        headers = {'Authorization': f'Bearer {compare.TENANT_KEY}', 'Content-Type': 'application/json'}
        while not self.stop:
            try:
                conn.request('POST', '/v1/chat-messages', body, headers)
                r = conn.getresponse()
                data = r.read()
                tokens = json.loads(data)['metadata']['usage']['total_tokens'] if r.status == 200 else 0
                status = r.status
                if status not in (200, 503) and status not in self.examples:
                    self.examples[status] = data.decode(errors='replace')[:300]
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                conn.close()
                conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
                status, tokens = 0, 0
            with self.lock:
                self.results.append((time.monotonic(), status, tokens))

    def finish(self):
        self.stop = True
        for t in self.threads:
            t.join()


def fail_over(sentinel, replica):
    """SENTINEL FAILOVER: (when the sentinel took the command, when it named the replica)."""
    if not wait_until(lambda: 'OK' in cli(sentinel.port, 'SENTINEL', 'FAILOVER', 'gw-master'), 30):
        raise RuntimeError('SENTINEL FAILOVER was not taken')
    lost_at = time.monotonic()
    if not wait_until(lambda: str(replica.port) in cli(sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'gw-master'), 30):
        raise RuntimeError('the sentinel did not promote the replica')
    return lost_at, time.monotonic()


def take_away(b, redis, kind, outage):
    """Redis hung or down for `outage` seconds, then back: (lost at, back at, the Redis now running)."""
    lost_at = time.monotonic()
    if kind == 'hung':
        redis.proc.send_signal(signal.SIGSTOP)
    else:
        redis.proc.kill()
        redis.proc.wait()
    time.sleep(outage)
    back_at = time.monotonic()
    if kind == 'hung':
        redis.proc.send_signal(signal.SIGCONT)
    else:
        b.services.remove(redis)
        redis = b.start('redis', redis.cmd, redis.port)
    return lost_at, back_at, redis


def one_run(b, emu, mode, kind, outage):
    port = compare.free_port()
    redis = b.start('redis', ['redis-server', '--port', str(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
                              '--appendfsync', 'everysec', '--dir', b.dir, '--appendfilename', f'{mode}-{kind}.aof'], port)
    store = {'on_error': mode}
    if kind == 'failover':
        replica, sentinel = with_sentinel(b, redis, mode)
        store.update({'url': 'redis://gw-master/0', 'sentinels': [f'127.0.0.1:{sentinel.port}']})
    gw = b.gateway(f'gateway-{mode}-{kind}', emu.port, quota='redis', redis_port=redis.port,
                   tenant_extra={'max_concurrent': 1000}, store_extra=store)
    load = Load(gw.port, 8)
    time.sleep(3)
    if kind == 'failover':
        lost_at, back_at = fail_over(sentinel, replica)
    else:
        lost_at, back_at, redis = take_away(b, redis, kind, outage)
    # Recovery: the first request decided in Redis again (the store's error count stops
    # growing), and the last background write landing.
    first_decided = writes_landed = None
    errors = store_figures(gw)['errors']
    while time.monotonic() - back_at < 30 and (first_decided is None or writes_landed is None):
        time.sleep(0.02)
        s = store_figures(gw)
        now = time.monotonic()
        if first_decided is None and s['errors'] == errors:
            first_decided = now - back_at
        errors = s['errors']
        if writes_landed is None and s['pending_writes'] == 0:
            writes_landed = now - back_at
    time.sleep(2)
    load.finish()
    time.sleep(0.5)  # the last settlements
    during = [r for r in load.results if lost_at <= r[0] < back_at]
    after = [r for r in load.results if r[0] >= back_at]
    s = store_figures(gw)
    reported = sum(r[2] for r in load.results)
    counted_on = replica if kind == 'failover' else redis
    row = {
        'on_error': mode, 'outage': kind, 'seconds': back_at - lost_at if kind == 'failover' else outage,
        'requests': len(load.results),
        'during_ok': sum(1 for r in during if r[1] == 200), 'during_refused': sum(1 for r in during if r[1] == 503),
        'during_other': sum(1 for r in during if r[1] not in (200, 503)),
        'after_not_ok': sum(1 for r in after if r[1] != 200),
        'after_statuses': {str(s): sum(1 for r in after if r[1] == s) for s in sorted({r[1] for r in after})},
        'examples': load.examples,
        'recovery_first_decided_s': first_decided, 'recovery_writes_landed_s': writes_landed,
        'tokens_reported': reported, 'tokens_in_redis': redis_used(counted_on.port),
        'store_errors': s['errors'], 'retried_writes': s['retried_writes'], 'dropped_writes': s['dropped_writes'],
        'pending_writes': s['pending_writes'],
    }
    if kind == 'failover':
        with open(gw.log.name, errors='replace') as f:
            moved = [line for line in f if 'moved from' in line]
        row['followed'] = 'announced' if any('announced by a sentinel' in m for m in moved) else \
            'asked' if moved else 'never'
        b.stop(sentinel)
        b.stop(replica)
    b.stop(gw)
    b.stop(redis)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--build', default='build')
    p.add_argument('--outage', type=float, default=10.0)
    p.add_argument('--out', help='write the rows as JSON here')
    p.add_argument('--modes', default='allow,deny,local', help='on_error modes to run')
    p.add_argument('--kinds', default='hung,down,failover', help='outages to run')
    args = p.parse_args()
    args.workers = 1
    b = compare.Bench(args)
    rows = []
    try:
        emu = b.emulator()
        for kind in args.kinds.split(','):
            for mode in args.modes.split(','):
                row = one_run(b, emu, mode, kind, args.outage)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        b.close()
    print('\n| outage | on_error | answered during | refused during | not OK after | first decided in Redis | '
          'writes landed | tokens reported / in Redis | retried / dropped writes |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        fmt = lambda v: f'{v:.2f} s' if v is not None else 'never'  # noqa: E731
        seconds = f"{r['seconds']:.2f}" if r['outage'] == 'failover' else f"{r['seconds']:.0f}"
        print(f"| {r['outage']} {seconds} s | {r['on_error']} | {r['during_ok']} | {r['during_refused']} | "
              f"{r['after_not_ok']} | {fmt(r['recovery_first_decided_s'])} | {fmt(r['recovery_writes_landed_s'])} | "
              f"{r['tokens_reported']} / {r['tokens_in_redis']} | {r['retried_writes']} / {r['dropped_writes']} |")
    for r in rows:
        if r['outage'] == 'failover':
            print(f"failover with on_error {r['on_error']}: the gateway followed it as the sentinel "
                  f"{'announced it' if r['followed'] == 'announced' else 'answered a question' if r['followed'] == 'asked' else 'never followed it'}")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    sys.exit(main())
