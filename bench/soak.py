#!/usr/bin/env python3
"""Soak: mixed blocking + streaming load through dify-gateway (two workers, memory or Redis
quotas) with upstream faults injected all along, for --duration seconds, sampling the
gateway's RSS, open file descriptors, upstream pool sizes and open streams every few
seconds. After the load stops, everything must come back to its idle baseline: no
connections, streams or quota slots left behind, RSS within 5% of the baseline taken
after warm-up. Exits 1 when something did not come back.

  bench/soak.py --duration 1800            # the documented 30-minute run
  bench/soak.py --duration 15 --quick      # CI: the same checks, briefly

Loopback only. Writes a JSON summary (and the samples) to --out when given.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (the stack helpers: processes, configs, /proc readings)

FAULTS = ['status=502', 'status=503; retry_after=1', 'reset_after=2', 'close', 'stall_ms=300; after=1', 'concurrency']


def metric(text, name, labels=''):
    """The sum of a metric's samples (those whose labels contain `labels`)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith('#'):
            continue
        series, _, value = line.rpartition(' ')
        if series.split('{')[0] == name and labels in series:
            total += float(value)
    return total


class Gateway:
    """The gateway under soak. Ownership records are capped low (2,000) so that the table
    fills during warm-up: its growth is a configured budget, not a leak."""

    def __init__(self, bench, emu, redis_port, max_concurrent):
        # Idle upstream connections are reaped after 2 s, so that idle really means idle.
        self.service = bench.gateway('gateway-soak', emu.port, quota='redis' if redis_port else 'memory',
                                     redis_port=redis_port, tenant_extra={'max_concurrent': max_concurrent},
                                     upstream_extra={'idle_timeout_ms': 2000}, store_extra={'ownership_max_entries': 2000})

    def sample(self):
        pid = self.service.proc.pid
        with urllib.request.urlopen(f'http://127.0.0.1:{self.service.admin}/metrics') as r:
            m = r.read().decode()
        return {
            't': round(time.monotonic(), 2),
            'rss_kib': compare.rss_kib([pid]),
            'fds': len(os.listdir(f'/proc/{pid}/fd')),
            'upstream_active': metric(m, 'dify_gateway_upstream_connections', 'state="active"'),
            'upstream_idle': metric(m, 'dify_gateway_upstream_connections', 'state="idle"'),
            'streams': metric(m, 'dify_gateway_active_streams'),
            'requests': metric(m, 'dify_gateway_requests_total'),
        }


def inject_faults(bench, emu, stop, every):
    """Programs a fault on the emulator every `every` seconds, round-robin."""
    i = 0
    while not stop.wait(every):
        spec = FAULTS[i % len(FAULTS)]
        body = json.dumps({'fault': spec, 'count': 3}).encode()
        req = urllib.request.Request(f'https://localhost:{emu.port}/_emulator/faults', data=body, method='POST',
                                     headers={'Content-Type': 'application/json'})
        try:
            urllib.request.urlopen(req, context=bench.ssl).read()
        except OSError:
            pass
        i += 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--build', default=os.path.join(compare.ROOT, 'build'))
    p.add_argument('--duration', type=float, default=1800)
    p.add_argument('--sample-every', type=float, default=5)
    p.add_argument('--redis', action='store_true', help='Redis quota store (else memory)')
    p.add_argument('--quick', action='store_true', help='CI: small load, samples every second')
    p.add_argument('--out', help='write the summary and samples (JSON) here')
    args = p.parse_args()

    class opts:
        workers = 2
        build = args.build
    bench = compare.Bench(opts)
    stop = threading.Event()
    samples = []
    try:
        emu = bench.emulator(token_delay_ms=20)
        redis = bench.redis() if args.redis else None
        max_concurrent = 64
        gw = Gateway(bench, emu, redis.port if redis else None, max_concurrent)
        url = f'http://127.0.0.1:{gw.service.port}'
        key = compare.TENANT_KEY
        every = 1 if args.quick else args.sample_every

        def start_load(seconds):
            rate = 100 if args.quick else 300
            return [
                bench.load(url, key, ['--mode', 'blocking', '--connections', '16', '--rate', str(rate),
                                      '--requests', '100000000', '--duration-s', str(seconds)]),
                bench.load(url, key, ['--mode', 'stream', '--connections', '16' if args.quick else '40', '--words', '20',
                                      '--requests', '100000000', '--duration-s', str(seconds)]),
            ]

        def finish(loads):
            results = []
            for proc in loads:
                out = proc.communicate()[0].strip().splitlines()
                results.append(json.loads(out[-1]) if out and out[-1].startswith('{') else {})
            return results

        def settled():
            """Waits (at most 60 s) until no stream, request or pooled connection is left."""
            end = time.monotonic() + 60
            s = gw.sample()
            while (s['streams'] or s['upstream_active'] or s['upstream_idle']) and time.monotonic() < end:
                time.sleep(0.5)
                s = gw.sample()
            return s

        # Warm-up with the same load (allocator arenas, pools, caches), then the idle baseline.
        finish(start_load(max(5.0, args.duration * 0.1)))
        baseline = settled()

        # Load, with faults injected all along.
        faults = threading.Thread(target=inject_faults, args=(bench, emu, stop, 2 if args.quick else 10))
        faults.start()
        loads = start_load(args.duration)
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            samples.append(gw.sample())
            print(f"[soak] {samples[-1]}", flush=True)
            time.sleep(every)
        stop.set()
        faults.join()
        results = finish(loads)
        # Programmed faults not yet used up must not hit the probes below.
        reset = urllib.request.Request(f'https://localhost:{emu.port}/_emulator/reset', data=b'', method='POST')
        urllib.request.urlopen(reset, context=bench.ssl).read()

        # Back to idle: no streams, no upstream connections (idle ones reaped), then probes.
        final = settled()
        # File descriptors too; each sample's own admin connection may still be closing when
        # the next one counts them, so they get a few seconds to come back.
        fds_end = time.monotonic() + 5
        while final['fds'] > baseline['fds'] and time.monotonic() < fds_end:
            time.sleep(0.2)
            final = gw.sample()
        # Quota slots: max_concurrent requests at once are all admitted again.
        probe = bench.load(url, key, ['--mode', 'blocking', '--connections', str(max_concurrent), '--requests',
                                      str(max_concurrent), '--duration-s', '30'])
        probe_result = json.loads(probe.communicate()[0].strip().splitlines()[-1])

        growth = (final['rss_kib'] - baseline['rss_kib']) / max(baseline['rss_kib'], 1)
        checks = {
            'no open streams': final['streams'] == 0,
            'no active upstream connections': final['upstream_active'] == 0,
            'no upstream connections left (idle ones reaped)': final['upstream_idle'] == 0,
            'file descriptors back to baseline': final['fds'] <= baseline['fds'],
            'quota slots all free (max_concurrent admitted at once)': probe_result.get('statuses', {}).get('200', 0) == max_concurrent,
            'RSS within 5% of baseline': growth <= 0.05,
        }
        summary = {
            'duration_s': args.duration, 'quota_store': 'redis' if args.redis else 'memory', 'baseline': baseline,
            'final': final, 'rss_growth': round(growth, 4), 'peak_rss_kib': max(s['rss_kib'] for s in samples) if samples else 0,
            'peak_fds': max(s['fds'] for s in samples) if samples else 0,
            'load': results, 'checks': checks,
        }
        print(json.dumps({k: v for k, v in summary.items() if k != 'load'}, indent=1))
        for name, ok in checks.items():
            print(f"{'ok  ' if ok else 'FAIL'} {name}")
        if args.out:
            with open(args.out, 'w') as f:
                json.dump({'summary': summary, 'samples': samples}, f, indent=1)
        return 0 if all(checks.values()) else 1
    finally:
        stop.set()
        bench.close()


if __name__ == '__main__':
    sys.exit(main())
