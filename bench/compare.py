#!/usr/bin/env python3
"""Side-by-side benchmark: the same Dify traffic straight to dify-emulator, through
dify-gateway (without quotas, with memory quotas, with Redis quotas), through nginx and
through haproxy 2.6 -- all proxying to the same TLS upstream with upstream keep-alive and the
same worker count -- in one run on one machine. Writes bench/results/<date>.md (table,
machine, versions, exact commands) and a PNG plot of latency vs offered load.

  bench/compare.py [--build DIR] [--workers N] [--quick] [--update-readme]

Figures that stay meaningful on a shared 2-core box: CPU per request (and per relayed SSE
event) of the proxy process(es), from /proc/<pid>/stat before and after each run, and RSS.
Loopback only. Needs nginx, haproxy, redis-server and gnuplot (deploy/install_deps.sh bench).
--quick runs every step briefly (well under a minute) to keep the script working in CI;
its figures are not meant to be read.
"""
import argparse
import datetime
import glob
import http.server
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
def _emulator_chat_key():
    """The built-in chat app's key of dify-emulator (config/emulator_apps.json)."""
    with open(os.path.join(ROOT, 'config', 'emulator_apps.json')) as f:
        return re.search(r'"key":\s*"([^"]+)",\s*"mode":\s*"chat"', f.read()).group(1)


CHAT_KEY = _emulator_chat_key()
RAMP_STREAMS, RAMP_RATE, RAMP_DELAY_MS = 600, 200, 20  # the distant-Dify ramp (section 4b)
# A faster ramp to a farther Dify (section 4c): more set-ups under way at once than
# max_connecting allowed before it was 256 (500/s × 100 ms = 50).
FAST_RAMP_STREAMS, FAST_RAMP_RATE, FAST_RAMP_DELAY_MS = 2000, 500, 100
TENANT_KEY = 'gw-bench-tenant-key-0123456789'
CLK_TCK = os.sysconf('SC_CLK_TCK')
# The commands dify-gateway sends itself: INFO commandstats also counts what its scripts call, so
# commands it sends rarely and its scripts also call (HMGET for /admin/usage, ZREM for app leases) are left out.
SENT_COMMANDS = {'evalsha', 'eval', 'set', 'get', 'cluster', 'auth', 'select'}
PAGE = os.sysconf('SC_PAGE_SIZE')


_GIVEN_PORTS = set()


def free_port():
    """A loopback port nothing listens on, never one this process handed out before: the
    kernel may return a port it just released, and two services (the gateway's listener and
    its admin port) given the same one would fail to start."""
    while True:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def wait_port(port, proc, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f'process {proc.args[0]} exited with {proc.returncode}')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f'port {port} did not open')


# ---- process accounting from /proc -------------------------------------------------

def tree(pid):
    """pid and its descendants (nginx: master and workers)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open(f'/proc/{p}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / CLK_TCK


def rss_kib(pids, field='VmRSS'):
    total = 0
    for p in pids:
        try:
            with open(f'/proc/{p}/status') as f:
                for line in f:
                    if line.startswith(field + ':'):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Service:
    """A started server process; `pids()` includes its children (nginx workers)."""

    def __init__(self, name, cmd, port, workdir, env=None):
        self.name, self.cmd, self.port = name, cmd, port
        self.log = open(os.path.join(workdir, name + '.log'), 'w')
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        try:
            wait_port(port, self.proc)
        except RuntimeError as e:
            self.stop()
            with open(self.log.name, errors='replace') as f:
                raise RuntimeError(f'{name}: {e}; its output:\n{f.read()[-4000:]}') from None

    def pids(self):
        return tree(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---- the stack ----------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.dir = tempfile.mkdtemp(prefix='dify-bench-')
        self.services = []
        self.sinks = []
        self.commands = []
        subprocess.run([os.path.join(ROOT, 'deploy', 'make_certs.sh'), self.dir], check=True)
        self.ca = os.path.join(self.dir, 'ca.pem')
        self.ssl = ssl.create_default_context(cafile=self.ca)

    def start(self, name, cmd, port, env=None):
        s = Service(name, cmd, port, self.dir, env)
        self.services.append(s)
        return s

    def stop(self, service):
        service.stop()
        self.services.remove(service)

    def close(self):
        for s in reversed(self.services):
            s.stop()
        for sink in self.sinks:
            sink.shutdown()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- servers
    def emulator(self, token_delay_ms=0, connect_delay_ms=0):
        """connect_delay_ms: each new connection waits that long before the emulator reads
        it (TLS: before the handshake), as a distant Dify's connection setup would."""
        port = free_port()
        return self.start('emulator', [os.path.join(self.build, 'gateway', 'dify-emulator'), '--listen', f'127.0.0.1:{port}',
                                       '--tls-cert', os.path.join(self.dir, 'server.pem'),
                                       '--tls-key', os.path.join(self.dir, 'server.key'),
                                       '--token-delay-ms', str(token_delay_ms),
                                       '--connect-delay-ms', str(connect_delay_ms)], port)

    def otlp_sink(self):
        """An OTLP/HTTP collector that takes every export and keeps nothing (a thread of
        this process: its CPU is not the gateway's)."""
        class Sink(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self):
                self.rfile.read(int(self.headers.get('Content-Length', 0)))
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'{}')

            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Sink)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.sinks.append(server)
        return f'http://127.0.0.1:{server.server_address[1]}/v1/traces'

    def gateway(self, name, emu_port, quota=None, redis_port=None, tenant_extra=None, max_connections=20000,
                upstream_extra=None, store_extra=None, tracing=None, under=()):
        """under: a command the gateway runs under (valgrind)."""
        port, admin = free_port(), free_port()
        tenant = {'keys': [TENANT_KEY], 'apps': ['chat']}
        if quota:
            tenant.update({'rate': {'requests_per_second': 1000000, 'burst': 1000000}, 'max_concurrent': 100000,
                           'tokens_per_day': 1000000000000})
        tenant.update(tenant_extra or {})
        config = {
            # One load generator on one address opens up to 10,000 connections: no per-client cap.
            'server': {'listen': f'127.0.0.1:{port}', 'threads': self.args.workers, 'max_connections_per_client': 0},
            'admin': {'listen': f'127.0.0.1:{admin}'},
            'log': {'level': 'warn', 'format': 'json', 'access_log': True},
            'upstreams': {'dify': {'url': f'https://localhost:{emu_port}', 'ca_file': self.ca,
                                   'max_connections': max_connections, **(upstream_extra or {})}},
            'apps': {'chat': {'api_keys': [CHAT_KEY]}},
            'tenants': {'bench': tenant},
            'quota_store': {'type': 'redis', 'url': f'redis://127.0.0.1:{redis_port}', 'timeout_ms': 50, 'on_error': 'deny'}
            if quota == 'redis' else {'type': 'memory'},
        }
        config['quota_store'].update(store_extra or {})
        if tracing:
            config['tracing'] = tracing
        path = os.path.join(self.dir, name + '.json')
        with open(path, 'w') as f:
            json.dump(config, f, indent=1)
        s = self.start(name, [*under, os.path.join(self.build, 'gateway', 'dify-gateway'), '--config', path], port)
        s.admin = admin
        return s

    def nginx(self, emu_port, under=()):
        """under: a command nginx runs under (valgrind); nginx then serves from one process."""
        port = free_port()
        conf = f"""
{'master_process off;' if under else ''}
worker_processes {self.args.workers};
worker_rlimit_nofile 20000;
pid {self.dir}/nginx.pid;
error_log {self.dir}/nginx-error.log warn;
daemon off;
events {{ worker_connections 19900; }}
http {{
    access_log {self.dir}/nginx-access.log combined buffer=64k flush=1s;
    client_body_temp_path {self.dir}/nginx-body;
    proxy_temp_path {self.dir}/nginx-proxy;
    upstream dify {{ server 127.0.0.1:{emu_port}; keepalive 256; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass https://dify;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost;
            proxy_set_header Authorization "Bearer {CHAT_KEY}";
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {self.ca};
            proxy_ssl_session_reuse on;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""
        path = os.path.join(self.dir, 'nginx.conf')
        with open(path, 'w') as f:
            f.write(conf)
        return self.start('nginx', [*under, 'nginx', '-c', path, '-e', os.path.join(self.dir, 'nginx-error.log')], port)

    def haproxy(self, emu_port):
        port = free_port()
        conf = f"""
global
    nbthread {self.args.workers}
    maxconn 9000
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    http-reuse always
frontend bench
    bind 127.0.0.1:{port}
    default_backend dify
backend dify
    http-request set-header Authorization "Bearer {CHAT_KEY}"
    http-request set-header Host localhost
    server emulator 127.0.0.1:{emu_port} ssl verify required ca-file {self.ca} sni str(localhost) verifyhost localhost
"""
        path = os.path.join(self.dir, 'haproxy.cfg')
        with open(path, 'w') as f:
            f.write(conf)
        return self.start('haproxy', ['haproxy', '-db', '-f', path], port)

    def redis(self):
        port = free_port()
        return self.start('redis', ['redis-server', '--port', str(port), '--bind', '127.0.0.1', '--save', '',
                                    '--appendonly', 'no'], port)

    @staticmethod
    def redis_commands(redis):
        """Commands Redis has executed so far, by name (INFO commandstats)."""
        out = subprocess.run(['redis-cli', '-p', str(redis.port), 'INFO', 'commandstats'], capture_output=True, text=True).stdout
        calls = {}
        for line in out.splitlines():
            m = re.match(r'cmdstat_([^:]+):calls=(\d+)', line)
            if m:
                calls[m.group(1)] = int(m.group(2))
        return calls

    def emulator_tls(self, emu):
        """The emulator's TLS handshakes so far: total, resumed and per protocol version
        (each call's own handshake is in the figures it returns)."""
        with urllib.request.urlopen(f'https://localhost:{emu.port}/_emulator/stats', context=self.ssl) as r:
            s = json.load(r)
        return {'handshakes': s['tls_handshakes'], 'resumed': s['tls_resumed'], 'versions': s['tls_versions']}

    def emulator_handshakes(self, emu):
        return self.emulator_tls(emu)['handshakes']

    # -- load
    def load(self, url, key, extra):
        cmd = [os.path.join(self.build, 'bench', 'dify-bench'), '--url', url, '--key', key, '--json'] + extra
        if url.startswith('https'):
            cmd += ['--ca', self.ca]
        self.commands.append(' '.join(shlex.quote(c) for c in cmd).replace(self.dir, '$TMP').replace(self.build, '$BUILD')
                             .replace(CHAT_KEY, '$EMULATOR_CHAT_KEY'))
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def measure(self, target, extra, emu=None, sample_rss=False):
        """Runs dify-bench against target = (url, key, service or None); returns its JSON
        result plus the proxy's CPU seconds, peak RSS (KiB) and RSS before."""
        url, key, service = target
        pids = service.pids() if service else []
        rss_before = rss_kib(pids)
        cpu_before = cpu_seconds(pids)
        tls_before = self.emulator_tls(emu) if emu else None
        proc = self.load(url, key, extra)
        peak = rss_before
        while proc.poll() is None:
            time.sleep(0.1 if sample_rss else 0.25)
            peak = max(peak, rss_kib(pids))
        out = proc.stdout.read().strip().splitlines()
        result = json.loads(out[-1]) if out and out[-1].startswith('{') else {'requests': 0, 'errors': -1}
        result['proxy_cpu_s'] = cpu_seconds(pids) - cpu_before
        result['rss_before_kib'] = rss_before
        result['rss_peak_kib'] = peak
        result['hwm_kib'] = rss_kib(pids, 'VmHWM')
        if emu:
            tls = self.emulator_tls(emu)
            result['upstream_handshakes'] = tls['handshakes'] - tls_before['handshakes']
            result['upstream_resumed'] = tls['resumed'] - tls_before['resumed']
            result['upstream_tls_versions'] = {v: n - tls_before['versions'].get(v, 0) for v, n in tls['versions'].items()
                                               if n != tls_before['versions'].get(v, 0)}
        return result


def us(x):
    return f'{x:.0f}' if x >= 10 else f'{x:.1f}'


def machine():
    cpu = 'unknown'
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    with open('/proc/meminfo') as f:
        mem = int(f.readline().split()[1]) // 1024 // 1024
    return f'{cpu}, {os.cpu_count()} cores, {mem} GiB, Linux {platform.release()}'


def versions(build):
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return 'not found'
    rev = first(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'])
    return {
        'dify-gateway': first([os.path.join(build, 'gateway', 'dify-gateway'), '--version']) + f' (commit {rev})',
        'nginx': first(['nginx', '-v']),
        'haproxy': first(['haproxy', '-v']),
        'redis': first(['redis-server', '--version']),
        'openssl': first(['openssl', 'version']),
        'compiler': first(['c++', '--version']),
    }


# ---- the run ------------------------------------------------------------------------

def run(args):
    b = Bench(args)
    quick = args.quick
    dur = 1.0 if quick else args.duration
    conns = 32
    report = {'blocking': {}, 'load': {}, 'streams': {}, 'pooling': {}}
    try:
        emu = b.emulator()
        redis = b.redis()
        paths = {
            'direct': (f'https://localhost:{emu.port}', CHAT_KEY, None),
            'dify-gateway': None, 'dify-gateway + memory quotas': None, 'dify-gateway + Redis quotas': None,
            'dify-gateway + tracing (every request)': None, 'nginx': None, 'haproxy': None,
        }
        gw = b.gateway('gateway', emu.port)
        paths['dify-gateway'] = (f'http://127.0.0.1:{gw.port}', TENANT_KEY, gw)
        gwt = b.gateway('gateway-tracing', emu.port, tracing={'otlp_endpoint': b.otlp_sink(), 'sample_ratio': 1.0})
        paths['dify-gateway + tracing (every request)'] = (f'http://127.0.0.1:{gwt.port}', TENANT_KEY, gwt)
        gwm = b.gateway('gateway-memory', emu.port, quota='memory')
        paths['dify-gateway + memory quotas'] = (f'http://127.0.0.1:{gwm.port}', TENANT_KEY, gwm)
        gwr = b.gateway('gateway-redis', emu.port, quota='redis', redis_port=redis.port)
        paths['dify-gateway + Redis quotas'] = (f'http://127.0.0.1:{gwr.port}', TENANT_KEY, gwr)
        ngx = b.nginx(emu.port)
        paths['nginx'] = (f'http://127.0.0.1:{ngx.port}', 'unused-by-nginx', ngx)
        hap = b.haproxy(emu.port)
        paths['haproxy'] = (f'http://127.0.0.1:{hap.port}', 'unused-by-haproxy', hap)

        # 1. Saturation: closed loop, `conns` connections, blocking chat-messages. Paths take
        # turns, `rounds` times; each path keeps its median run by CPU per request.
        for name, target in paths.items():  # warm-up: connections, pools, caches
            b.measure(target, ['--mode', 'blocking', '--connections', str(conns), '--requests', '100000000',
                               '--duration-s', '0.5'])
        runs = {name: [] for name in paths}
        for _ in range(1 if quick else args.rounds):
            for name, target in paths.items():
                before = b.redis_commands(redis) if target[2] is gwr else None
                redis_cpu = cpu_seconds(redis.pids())
                r = b.measure(target, ['--mode', 'blocking', '--connections', str(conns), '--requests', '100000000',
                                       '--duration-s', str(dur)], emu=emu)
                r['cpu_us_per_request'] = 1e6 * r['proxy_cpu_s'] / max(r['requests'], 1)
                if before is not None:  # every request generates: admission, settlement, the conversation's owner
                    after = b.redis_commands(redis)
                    # commandstats also counts the calls scripts make: only what the gateway sends.
                    sent = {k: v - before.get(k, 0) for k, v in after.items()
                            if k in SENT_COMMANDS and v - before.get(k, 0) > 0}
                    r['redis_commands_per_request'] = sum(sent.values()) / max(r['requests'], 1)
                    r['redis_cpu_us_per_request'] = 1e6 * (cpu_seconds(redis.pids()) - redis_cpu) / max(r['requests'], 1)
                    r['redis_commands'] = {k: round(v / max(r['requests'], 1), 2) for k, v in sorted(sent.items())}
                runs[name].append(r)
        for name in paths:
            good = [r for r in runs[name] if r['requests'] > 0 and r['errors'] == 0] or runs[name]
            ordered = sorted(good, key=lambda r: r['cpu_us_per_request'])
            r = ordered[len(ordered) // 2]
            r['cpu_us_per_request_runs'] = [round(x['cpu_us_per_request'], 1) for x in runs[name]]
            report['blocking'][name] = r
            print(f"{name:30s} {r['rps']:8.0f} req/s  p50 {r['p50_us']:6.0f} us  p99 {r['p99_us']:6.0f} us  "
                  f"proxy CPU/request {r['cpu_us_per_request']:5.1f} us {r['cpu_us_per_request_runs']}  errors {r['errors']}"
                  + (f"  Redis commands/request {r['redis_commands_per_request']:.2f} {r['redis_commands']}, "
                     f"redis-server CPU/request {r['redis_cpu_us_per_request']:.1f} us"
                     if 'redis_commands_per_request' in r else ''), flush=True)

        # 2. Latency vs offered load (open loop), the same offered loads on every path.
        saturation = report['blocking']['dify-gateway']['rps']
        fractions = [0.5] if quick else [0.1, 0.25, 0.5, 0.75, 0.9]
        report['saturation_rps'] = saturation
        for frac in fractions:
            rate = max(10, saturation * frac)
            # The half-load point carries the added-latency targets: `rounds` interleaved runs
            # there, each path keeping its median run by p99 (one run's p99 on this shared
            # machine moves by more than the targets).
            load_runs = {name: [] for name in paths}
            for _ in range(args.rounds if frac == 0.5 and not quick else 1):
                for name, target in paths.items():
                    r = b.measure(target, ['--mode', 'blocking', '--connections', '64', '--rate', f'{rate:.0f}',
                                           '--requests', '100000000', '--duration-s', str(dur)])
                    r['cpu_us_per_request'] = 1e6 * r['proxy_cpu_s'] / max(r['requests'], 1)
                    load_runs[name].append(r)
            for name in paths:
                report['load'].setdefault(name, {})[frac] = median_by_p99(load_runs[name])
            print(f'offered {rate:.0f} req/s: ' + ', '.join(
                f"{n} p50 {report['load'][n][frac]['p50_us']:.0f}/p99 {report['load'][n][frac]['p99_us']:.0f} us"
                for n in paths), flush=True)

        # 2b. The Redis store's latency target is set at half of the memory store's
        # saturation, below the gateway's: the memory and Redis paths at that load, `rounds`
        # interleaved runs, each keeping its median run by p99.
        rate = max(10, report['blocking']['dify-gateway + memory quotas']['rps'] * 0.5)
        stores = {'memory': 'dify-gateway + memory quotas', 'redis': 'dify-gateway + Redis quotas'}
        store_runs = {key: [] for key in stores}
        for _ in range(1 if quick else args.rounds):
            for key, name in stores.items():
                store_runs[key].append(b.measure(paths[name], ['--mode', 'blocking', '--connections', '64', '--rate', f'{rate:.0f}',
                                                               '--requests', '100000000', '--duration-s', str(dur)]))
        report['redis_half'] = {'rps': rate, **{key: median_by_p99(runs) for key, runs in store_runs.items()}}
        print(f"offered {rate:.0f} req/s (half of the memory store's saturation): " + ', '.join(
            f"{key} p50 {report['redis_half'][key]['p50_us']:.0f}/p99 {report['redis_half'][key]['p99_us']:.0f} us"
            for key in stores), flush=True)

        # 3. Pooling: upstream TLS connections a fresh gateway opens over N requests.
        for s in (gw, gwm, gwr, gwt, ngx, hap, redis):
            b.stop(s)
        fresh = b.gateway('gateway-pooling', emu.port, max_connections=8)
        n = 2000 if quick else 100000
        r = b.measure((f'http://127.0.0.1:{fresh.port}', TENANT_KEY, fresh),
                      ['--mode', 'blocking', '--connections', str(conns), '--requests', str(n), '--duration-s', '600'], emu=emu)
        handshakes = r['upstream_handshakes'] - 1  # the second stats call's own TLS connection
        report['pooling'] = {'requests': r['requests'], 'handshakes': handshakes, 'connections': conns,
                             'max_connections': 8, 'errors': r['errors']}
        print(f"pooling: {r['requests']} requests, {handshakes} upstream TLS handshakes", flush=True)
        b.stop(fresh)
        b.stop(emu)

        # 4. Streams: N held SSE streams, one event per second each (fresh processes).
        words = 6 if quick else 25
        emu = b.emulator(token_delay_ms=1000)
        counts = [200] if quick else args.streams
        for n in counts:
            # The largest count, whose ramp loads both cores, runs as several interleaved
            # rounds (fresh proxies each); each path's median run by time to first event.
            rounds = 1 if quick or n != max(counts) else args.rounds
            runs = {}
            for _ in range(rounds):
                stream_paths = {'direct': (f'https://localhost:{emu.port}', CHAT_KEY, None)}
                gw = b.gateway('gateway-streams', emu.port)
                stream_paths['dify-gateway'] = (f'http://127.0.0.1:{gw.port}', TENANT_KEY, gw)
                ngx = b.nginx(emu.port)
                stream_paths['nginx'] = (f'http://127.0.0.1:{ngx.port}', 'unused-by-nginx', ngx)
                time.sleep(0.5)
                for name, target in stream_paths.items():
                    r = b.measure(target, ['--mode', 'hold', '--connections', str(n), '--words', str(words),
                                           '--open-rate', '2000', '--duration-s', '600'], emu=emu, sample_rss=True)
                    r['streams'] = n
                    r['rss_per_stream_kib'] = (r['rss_peak_kib'] - r['rss_before_kib']) / n
                    r['cpu_us_per_event'] = 1e6 * r['proxy_cpu_s'] / max(r['events'], 1)
                    runs.setdefault(name, []).append(r)
                    print(f"{n} streams {name:14s} events {r['events']} errors {r['errors']} RSS/stream "
                          f"{r['rss_per_stream_kib']:.1f} KiB CPU/event {r['cpu_us_per_event']:.1f} us "
                          f"ttfb p50 {r['ttfb_p50_us']:.0f} us", flush=True)
                b.stop(gw)
                b.stop(ngx)
            for name, rs in runs.items():
                median = sorted(rs, key=lambda r: r['ttfb_p50_us'])[len(rs) // 2]
                median['ttfb_p50_us_runs'] = [r['ttfb_p50_us'] for r in rs]
                report['streams'].setdefault(n, {})[name] = median
        b.stop(emu)

        # 4b. A ramp of new streams to a distant Dify: every new upstream connection waits
        # RAMP_DELAY_MS before its handshake (two round trips of a 10 ms network), at a rate
        # the one worker keeps up with, with and without the gateway's preconnect.
        emu = b.emulator(token_delay_ms=1000, connect_delay_ms=RAMP_DELAY_MS)
        ramp_paths = {'direct': (f'https://localhost:{emu.port}', CHAT_KEY, None)}
        for ratio in (1, 1.5):
            g = b.gateway(f'gateway-ramp-{ratio}', emu.port, upstream_extra={'preconnect_ratio': ratio})
            ramp_paths[f'dify-gateway, preconnect_ratio {ratio:g}'] = (f'http://127.0.0.1:{g.port}', TENANT_KEY, g)
        ngx = b.nginx(emu.port)
        ramp_paths['nginx'] = (f'http://127.0.0.1:{ngx.port}', 'unused-by-nginx', ngx)
        time.sleep(0.5)
        ramp_streams = 100 if quick else RAMP_STREAMS
        report['ramp'] = {'streams': ramp_streams, 'rate': RAMP_RATE, 'connect_delay_ms': RAMP_DELAY_MS, 'paths': {}}
        report['ramp']['paths'] = ramp(b, emu, 'ramp', ramp_paths, ramp_streams, RAMP_RATE)
        b.stop(emu)

        # 4c. A faster ramp to a farther Dify: FAST_RAMP_RATE new streams per second while
        # each connection set-up takes FAST_RAMP_DELAY_MS, so that many set-ups are under way
        # at once; a cap on them (max_connecting) must not become a cap on new streams.
        emu = b.emulator(token_delay_ms=1000, connect_delay_ms=FAST_RAMP_DELAY_MS)
        fast_paths = {}
        g = b.gateway('gateway-fast-ramp', emu.port)
        fast_paths['dify-gateway'] = (f'http://127.0.0.1:{g.port}', TENANT_KEY, g)
        ngx = b.nginx(emu.port)
        fast_paths['nginx'] = (f'http://127.0.0.1:{ngx.port}', 'unused-by-nginx', ngx)
        time.sleep(0.5)
        fast_streams = 200 if quick else FAST_RAMP_STREAMS
        report['fast_ramp'] = {'streams': fast_streams, 'rate': FAST_RAMP_RATE, 'connect_delay_ms': FAST_RAMP_DELAY_MS,
                               'paths': ramp(b, emu, 'fast ramp', fast_paths, fast_streams, FAST_RAMP_RATE)}
        b.stop(emu)

        # 5. Instructions per request (callgrind), and microbenchmarks.
        report['instructions'] = instructions(b, quick)
        report['micro'] = micro(b.build, quick)
        report['allocations'] = allocations(b.build)
        report['machine'] = machine()
        report['versions'] = versions(b.build)
        report['commands'] = b.commands
        report['workers'] = args.workers
        report['duration'] = dur
        report['rounds'] = 1 if quick else args.rounds
        return report
    finally:
        b.close()


def median_by_p99(runs):
    """The run with the median p99 of `runs` (interleaved runs of one path at one load),
    with every run's p99 listed."""
    r = sorted(runs, key=lambda x: x['p99_us'])[len(runs) // 2]
    r['p99_us_runs'] = [round(x['p99_us']) for x in runs]
    return r


def ramp(b, emu, label, paths, streams, rate):
    """Opens `streams` held streams at `rate` per second through each path in turn (each
    proxy stopped after its run); their results by path name."""
    out = {}
    for name, target in paths.items():
        r = b.measure(target, ['--mode', 'hold', '--connections', str(streams), '--words', '4',
                               '--open-rate', str(rate), '--duration-s', '600'], emu=emu)
        out[name] = r
        print(f"{label} {name:36s} errors {r['errors']} ttfb p50 {r['ttfb_p50_us']:.0f} us p99 {r['ttfb_p99_us']:.0f} us "
              f"handshakes {r['upstream_handshakes']}", flush=True)
        if target[2]:
            b.stop(target[2])
    return out


def instructions(b, quick):
    """User-space instructions per blocking request of dify-gateway and of nginx, counted
    by callgrind: each proxy alone under valgrind (the emulator and dify-bench run natively),
    counters zeroed after a warm-up, then a fixed number of requests. Unlike CPU time, the
    count does not move with the machine's load, so two runs (or two commits) compare
    exactly; it leaves out the kernel. None when valgrind is not installed."""
    if not shutil.which('valgrind') or not shutil.which('callgrind_control'):
        return None
    requests = 200 if quick else 2000
    emu = b.emulator()
    out = {'requests': requests}
    try:
        for name in ('dify-gateway', 'nginx'):
            dump = os.path.join(b.dir, f'callgrind-{name}.%p.out')
            under = ('valgrind', '--tool=callgrind', f'--callgrind-out-file={dump}')
            proxy = b.gateway('gateway-callgrind', emu.port, under=under) if name == 'dify-gateway' \
                else b.nginx(emu.port, under=under)
            key = TENANT_KEY if name == 'dify-gateway' else 'unused-by-nginx'
            target = (f'http://127.0.0.1:{proxy.port}', key, proxy)
            b.measure(target, ['--mode', 'blocking', '--connections', '8', '--requests', '300'])
            pid = str(proxy.proc.pid)
            handshakes = b.emulator_handshakes(emu)
            subprocess.run(['callgrind_control', '-z', pid], check=True, capture_output=True)
            r = b.measure(target, ['--mode', 'blocking', '--connections', '8', '--requests', str(requests)])
            subprocess.run(['callgrind_control', '-d', pid], check=True, capture_output=True)
            # New upstream connections in the counted window would add handshakes to the
            # figure (the stats call's own handshake is the 1 subtracted).
            out[name + ' handshakes'] = b.emulator_handshakes(emu) - handshakes - 1
            totals = None
            for path in sorted(glob.glob(dump.replace('%p', pid) + '.*'), key=os.path.getmtime)[-1:]:
                with open(path) as f:
                    for line in f:
                        if line.startswith(('summary:', 'totals:')):
                            totals = int(line.split()[1])
            b.stop(proxy)
            if totals is None or r['requests'] == 0 or r['errors']:
                return None
            out[name] = totals / r['requests']
            print(f"instructions per blocking request (callgrind): {name} {out[name]:.0f}", flush=True)
    finally:
        b.stop(emu)
    return out


def micro(build, quick):
    rows = []
    for exe in ('core_bench', 'quota_bench'):
        cmd = [os.path.join(build, 'bench', exe), '--benchmark_format=json',
               '--benchmark_filter=' + ('.' if exe == 'core_bench' else 'memory_store|token_bucket|header')]
        if quick:
            cmd.append('--benchmark_min_time=0.01')
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        for bm in json.loads(r.stdout)['benchmarks']:
            row = {'name': bm['name'], 'ns': bm['cpu_time'] if bm['time_unit'] == 'ns' else bm['cpu_time'] * 1000}
            if 'bytes_per_second' in bm:
                row['mb_s'] = bm['bytes_per_second'] / 1e6
            if 'items_per_second' in bm:
                row['items_s'] = bm['items_per_second']
            rows.append(row)
    return rows


def allocations(build):
    """Heap allocations on the gateway's worker thread (bench/path_bench: gateway and
    emulator in one process, every malloc of the worker counted): per blocking request, and
    per relayed SSE event as the difference between a 64-word and an 8-word stream; and per
    blocking request while 32 connections send at once (the worker's steps interleaved)."""
    r = subprocess.run([os.path.join(build, 'bench', 'path_bench'), '--benchmark_format=json'], capture_output=True,
                       text=True, check=True)
    by = {bm['name'].split('/iterations')[0]: bm for bm in json.loads(r.stdout)['benchmarks']}
    short, long_ = by['streamed_chat/8'], by['streamed_chat/64']
    events = long_['events_per_stream'] - short['events_per_stream']
    return {
        'per_request': by['blocking_chat']['allocations_per_request'],
        'per_request_concurrent': by['blocking_chat_concurrent/32']['allocations_per_request'],
        'per_stream': short['allocations_per_stream'],
        'per_event': (long_['allocations_per_stream'] - short['allocations_per_stream']) / max(events, 1),
    }


# ---- the report ---------------------------------------------------------------------

def blocking_table(report):
    direct = report['load']['direct'][0.5]
    lines = ['| path | req/s (saturated) | proxy CPU / request | p50 / p99 at saturation | added p50 / p99 at half load | peak RSS | upstream TLS handshakes |',
             '|---|---:|---:|---:|---:|---:|---:|']
    for name, r in report['blocking'].items():
        half = report['load'][name][0.5]
        cpu = '—' if name == 'direct' else f"{r['cpu_us_per_request']:.1f} µs"
        added = '—' if name == 'direct' else \
            f"{(half['p50_us'] - direct['p50_us']) / 1000:+.2f} / {(half['p99_us'] - direct['p99_us']) / 1000:+.2f} ms"
        rss = '—' if name == 'direct' else f"{r['hwm_kib'] / 1024:.1f} MiB"
        lines.append(f"| {name} | {r['rps']:.0f} | {cpu} | {r['p50_us'] / 1000:.2f} / {r['p99_us'] / 1000:.2f} ms | "
                     f"{added} | {rss} | {r.get('upstream_handshakes', '—')} |")
    return '\n'.join(lines)


def upstream_tls(r):
    """'1001 TLSv1.3 (840 resumed)': the upstream handshakes of one measurement (the
    emulator's statistics call that ends it is one of them)."""
    if 'upstream_tls_versions' not in r:
        return '—'
    versions = ', '.join(f'{n} {v}' for v, n in sorted(r['upstream_tls_versions'].items()))
    return f"{versions} ({r['upstream_resumed']} resumed)"


def ramp_table(report, key='ramp'):
    ramp = report.get(key)
    if not ramp:
        return '(not measured in this run)'
    lines = ['| path | errors | time to first event p50 / p99 | proxy CPU / stream | upstream TLS handshakes (resumed) |',
             '|---|---:|---:|---:|---|']
    for name, r in ramp['paths'].items():
        cpu = '—' if name == 'direct' else f"{1e6 * r['proxy_cpu_s'] / max(r['requests'], 1):.0f} µs"
        lines.append(f"| {name} | {r['errors']} | {r['ttfb_p50_us'] / 1000:.1f} / {r['ttfb_p99_us'] / 1000:.1f} ms | {cpu} | "
                     f"{upstream_tls(r)} |")
    return '\n'.join(lines)


def streams_table(report):
    lines = ['| streams | path | events relayed | errors | RSS per open stream | proxy CPU / event | time to first event p50 / p99 | gap between events p99 | upstream TLS handshakes (resumed) |',
             '|---:|---|---:|---:|---:|---:|---:|---:|---|']
    for n, by_path in report['streams'].items():
        for name, r in by_path.items():
            rss = '—' if name == 'direct' else f"{r['rss_per_stream_kib']:.1f} KiB"
            cpu = '—' if name == 'direct' else f"{r['cpu_us_per_event']:.1f} µs"
            lines.append(f"| {n} | {name} | {r['events']} | {r['errors']} | {rss} | {cpu} | "
                         f"{r['ttfb_p50_us'] / 1000:.1f} / {r['ttfb_p99_us'] / 1000:.1f} ms | {r['gap_p99_us'] / 1000:.0f} ms | "
                         f"{upstream_tls(r)} |")
    return '\n'.join(lines)


def load_table(report):
    fractions = sorted(next(iter(report['load'].values())).keys())
    head = '| path | ' + ' | '.join(f"{report['saturation_rps'] * f:.0f} req/s" for f in fractions) + ' |'
    lines = [head, '|---|' + '---:|' * len(fractions)]
    for name, by_frac in report['load'].items():
        lines.append(f'| {name} | ' + ' | '.join(
            f"{by_frac[f]['p50_us'] / 1000:.2f} / {by_frac[f]['p99_us'] / 1000:.2f}" for f in fractions) + ' |')
    return '\n'.join(lines)


def micro_table(report):
    lines = ['| benchmark | CPU time | throughput |', '|---|---:|---:|']
    for m in report['micro']:
        tput = f"{m['mb_s']:.0f} MB/s" if 'mb_s' in m else (f"{m['items_s'] / 1e6:.2f} M items/s" if 'items_s' in m else '')
        lines.append(f"| {m['name']} | {m['ns']:.0f} ns | {tput} |")
    return '\n'.join(lines)


def instructions_text(report):
    ins = report.get('instructions')
    if not ins:
        return 'User-space instructions per request were not counted in this run (valgrind missing, or an older run).'
    return (f"User-space instructions per blocking request, counted by callgrind ({ins['requests']} requests, 8 "
            f"connections, each proxy alone under valgrind after a warm-up; the kernel's share is not in them): "
            f"dify-gateway {ins['dify-gateway']:.0f}, nginx {ins['nginx']:.0f} "
            f"({ins['dify-gateway'] / ins['nginx']:.2f}×; new upstream TLS connections while counting: "
            f"{ins.get('dify-gateway handshakes', '?')} and {ins.get('nginx handshakes', '?')}). "
            "Unlike CPU time they do not move with the machine's load.")


def targets_table(report):
    """The README's performance targets against this run's figures."""
    gw, ngx = report['blocking']['dify-gateway'], report['blocking']['nginx']
    direct_half, gw_half = report['load']['direct'][0.5], report['load']['dify-gateway'][0.5]
    added_p50 = (gw_half['p50_us'] - direct_half['p50_us']) / 1000
    added_p99 = (gw_half['p99_us'] - direct_half['p99_us']) / 1000
    biggest = max(report['streams']) if report['streams'] else None
    rows = []

    def row(target, measured, ok, unresolved_why='noise'):
        verdict = f'**unresolved** ({unresolved_why})' if ok is None else 'met' if ok else '**missed**'
        rows.append(f"| {target} | {measured} | {verdict} |")

    def p99_spread(*runs):
        """The widest spread of one path's p99 over its half-load runs (ms): a p99 target
        smaller than that cannot be judged from this run."""
        return max((max(r.get('p99_us_runs', [r['p99_us']])) - min(r.get('p99_us_runs', [r['p99_us']]))) / 1000
                   for r in runs)

    ratio = gw['cpu_us_per_request'] / max(ngx['cpu_us_per_request'], 1e-9)
    ins = report.get('instructions')
    ins_text = (f"; user-space instructions {ins['dify-gateway'] / 1000:.1f}k vs {ins['nginx'] / 1000:.1f}k "
                f"({ins['dify-gateway'] / ins['nginx']:.2f}×, callgrind)") if ins else ''
    row('CPU per blocking request ≤ nginx\'s', f"{gw['cpu_us_per_request']:.1f} µs vs nginx {ngx['cpu_us_per_request']:.1f} µs "
        f"({ratio:.2f}×){ins_text}", ratio <= 1.0)
    spread = p99_spread(direct_half, gw_half)
    row('added latency at half saturation: p50 ≤ 0.2 ms, p99 ≤ 1 ms',
        f'{added_p50:+.2f} ms / {added_p99:+.2f} ms (p99 of one path spread up to {spread:.1f} ms over its runs)',
        False if added_p50 > 0.2 else None if spread > 1.0 else added_p99 <= 1.0)
    if biggest is not None:
        g, n = report['streams'][biggest]['dify-gateway'], report['streams'][biggest]['nginx']
        gk, nk = g['rss_per_stream_kib'], n['rss_per_stream_kib']
        # nginx's figure with streams it failed is no measure to halve.
        nginx_failed = n.get('errors', 0) > 0
        row(f"{biggest} streams at ≤ 24 KiB RSS each, and ≤ 0.5× nginx's",
            f"{gk:.1f} KiB (nginx {nk:.1f} KiB: {gk / nk:.2f}×" + (f"; nginx had {n['errors']} errors" if nginx_failed else '') + ')',
            False if gk > 24 else None if nginx_failed else gk <= 0.5 * nk, 'nginx had errors')
        row('CPU per relayed event ≤ nginx\'s', f"{g['cpu_us_per_event']:.1f} µs vs nginx {n['cpu_us_per_event']:.1f} µs",
            g['cpu_us_per_event'] <= n['cpu_us_per_event'])
        runs = g.get('ttfb_p50_us_runs', [g['ttfb_p50_us']])
        runs_text = f"; runs {', '.join(f'{x / 1000:.1f}' for x in runs)} ms" if len(runs) > 1 else ''
        row(f'time to first event p50 ≤ 50 ms while {biggest} streams open at 2,000/s',
            f"{g['ttfb_p50_us'] / 1000:.1f} ms (nginx {n['ttfb_p50_us'] / 1000:.1f} ms){runs_text}", g['ttfb_p50_us'] <= 50_000)
    ramp = report.get('ramp')
    if ramp:
        cold, warm = (ramp['paths'].get(f'dify-gateway, preconnect_ratio {r}') for r in ('1', '1.5'))
        if cold and warm:
            row(f"new streams ({ramp['rate']}/s) do not wait for a distant Dify's connection setup ({ramp['connect_delay_ms']} ms): "
                "time to first event p50 below half of it", f"{warm['ttfb_p50_us'] / 1000:.1f} ms with preconnect_ratio 1.5 "
                f"({cold['ttfb_p50_us'] / 1000:.1f} ms without)", warm['ttfb_p50_us'] <= ramp['connect_delay_ms'] * 500)
    fast = report.get('fast_ramp')
    if fast and 'dify-gateway' in fast['paths']:
        g, n = fast['paths']['dify-gateway'], fast['paths'].get('nginx')
        delay = fast['connect_delay_ms']
        row(f"new streams at {fast['rate']}/s to a Dify whose connection set-up takes {delay} ms wait for no more than "
            f"one set-up: time to first event p50 ≤ 1.2× it",
            f"{g['ttfb_p50_us'] / 1000:.1f} ms" + (f" (nginx {n['ttfb_p50_us'] / 1000:.1f} ms)" if n else ''),
            g['ttfb_p50_us'] <= delay * 1200 and g['errors'] == 0)
    mem, red = report['blocking'].get('dify-gateway + memory quotas'), report['blocking'].get('dify-gateway + Redis quotas')
    if mem and red:
        ratio = red['cpu_us_per_request'] / max(mem['cpu_us_per_request'], 1e-9)
        row('Redis quota store: CPU per request ≤ 1.5× the memory store\'s',
            f"{red['cpu_us_per_request']:.1f} µs vs {mem['cpu_us_per_request']:.1f} µs ({ratio:.2f}×)", ratio <= 1.5)
        mem_half = report['load'].get('dify-gateway + memory quotas', {}).get(0.5)
        red_half = report['load'].get('dify-gateway + Redis quotas', {}).get(0.5)
        at = report.get('redis_half')
        if at:  # measured at half of the memory store's saturation, against it
            added = (at['redis']['p99_us'] - at['memory']['p99_us']) / 1000
            red_runs, mem_runs = at['redis']['p99_us_runs'], at['memory']['p99_us_runs']
            # Judged only where every pairing of the two paths' runs agrees: missed when the
            # Redis path's best run is more than 2 ms above the memory store's worst.
            worst, best = (max(red_runs) - min(mem_runs)) / 1000, (min(red_runs) - max(mem_runs)) / 1000
            row(f"Redis quota store: added p99 ≤ 2 ms at half of the memory store's saturation ({at['rps']:.0f} req/s; "
                "against the memory store)",
                f"{added:+.2f} ms: p99 {at['redis']['p99_us'] / 1000:.2f} against {at['memory']['p99_us'] / 1000:.2f} ms "
                f"(between {best:+.2f} and {worst:+.2f} ms over the pairings of their runs)",
                True if worst <= 2.0 else False if best > 2.0 else None)
        elif mem_half and red_half:  # reports from before that measurement
            # Against the lower p99 of the gateway without Redis (memory quotas or none): one
            # run's outlier on the memory path must not read as Redis costing nothing.
            base = min(mem_half['p99_us'], gw_half['p99_us'])
            added = (red_half['p99_us'] - base) / 1000
            spread = p99_spread(mem_half, gw_half, red_half)
            row('Redis quota store: added p99 ≤ 2 ms at half saturation (against the gateway without Redis)',
                f'{added:+.2f} ms (p99 of one path spread up to {spread:.1f} ms over its runs)', None if spread > 2.0 else added <= 2.0)
        if 'redis_commands_per_request' in red:
            per = ', '.join(f'{k} {v}' for k, v in red['redis_commands'].items())
            row('Redis commands per generating request (one round trip on the request path)',
                f"{red['redis_commands_per_request']:.2f} ({per}); redis-server CPU {red.get('redis_cpu_us_per_request', 0):.1f} µs",
                True)
    traced = report['blocking'].get('dify-gateway + tracing (every request)')
    if traced:
        row('tracing: the cost per request with every request sampled and exported (no exporter: the dify-gateway row)',
            f"{traced['cpu_us_per_request']:.1f} µs vs {gw['cpu_us_per_request']:.1f} µs "
            f"({traced['cpu_us_per_request'] - gw['cpu_us_per_request']:+.1f} µs)", True)
    pool = report['pooling']
    row('new upstream TLS connections ≤ max_connections over the pooling run',
        f"{pool['handshakes']} for {pool['requests']} requests (max_connections {pool.get('max_connections', '?')})",
        pool['handshakes'] <= pool.get('max_connections', pool['handshakes']))
    alloc = report.get('allocations')
    if alloc:
        row('heap allocations per blocking request: single digits besides the body buffers (bench/path_bench)',
            f"{alloc['per_request']:.0f}" + (f" ({alloc['per_request_concurrent']:.0f} while 32 connections send at once)"
                                              if 'per_request_concurrent' in alloc else ''),
            alloc['per_request'] < 10 and alloc.get('per_request_concurrent', 0) < 10)
        row('heap allocations per relayed SSE event: none',
            # A difference of two counts: a rounding to zero from below prints as 0.0, not -0.0.
            f"{round(alloc['per_event'], 1) + 0.0:.1f} (a stream's own: {alloc['per_stream']:.0f})", alloc['per_event'] < 0.5)
    decision = next((m['ns'] for m in report['micro'] if m['name'] == 'token_bucket_decision'), None)
    if decision is not None:
        row('local quota decision ≤ 100 ns', f'{decision:.1f} ns (token bucket)', decision <= 100)
    return '\n'.join(['| target | this run | |', '|---|---|---|'] + rows)


def plot(report, png):
    data = png[:-4] + '.dat'
    names = list(report['load'])
    with open(data, 'w') as f:
        for name in names:
            f.write(f'# {name}\n')
            for frac, r in sorted(report['load'][name].items()):
                f.write(f"{report['saturation_rps'] * frac:.0f} {r['p50_us'] / 1000:.3f} {r['p99_us'] / 1000:.3f}\n")
            f.write('\n\n')
    series = []
    for i, name in enumerate(names):
        series.append(f"'{data}' index {i} using 1:2 with linespoints lc {i + 1} pt 7 title '{name} p50'")
        series.append(f"'{data}' index {i} using 1:3 with linespoints lc {i + 1} dt 2 pt 6 title '{name} p99'")
    script = (f"set terminal png size 1100,650; set output '{png}'; set title 'Blocking chat-messages: latency vs offered load';"
              "set xlabel 'offered load (requests/s)'; set ylabel 'latency (ms)'; set logscale y; set grid;"
              "set key outside right; plot " + ', '.join(series))
    subprocess.run(['gnuplot', '-e', script], check=True)
    os.remove(data)


def write_report(report, args):
    day = datetime.date.today().isoformat()
    os.makedirs(args.out, exist_ok=True)
    md = os.path.join(args.out, f'{day}.md')
    png = os.path.join(args.out, f'{day}-latency.png')
    plot(report, png)
    gw = report['blocking']['dify-gateway']
    ngx = report['blocking']['nginx']
    pool = report['pooling']
    notes_file = os.path.join(HERE, 'results', 'notes.md')
    notes = ''
    if os.path.exists(notes_file):
        with open(notes_file) as f:
            notes = f.read().strip() + '\n\n'
    dur_note = (f"{report['duration']:g} s per run; each path's median of {report['rounds']} interleaved runs "
                "by CPU per request (all runs listed in the JSON)")
    text = f"""# dify-gateway benchmark, {day}{' (quick mode: figures not meaningful)' if args.quick else ''}

Machine: {report['machine']}. Every process (load generator, emulator, proxies) shares these
cores, so throughput and latency are relative; **CPU per request of the proxy process** is the
figure that carries over. Each proxy ran with {report['workers']} worker(s), plain HTTP from the
load generator, TLS with keep-alive to the same dify-emulator upstream. Every proxy speaks
TLS 1.3 to it (the "upstream TLS" column): nginx 1.22 is told `proxy_ssl_protocols TLSv1.2
TLSv1.3`, as it otherwise negotiates TLS 1.2 upstream, whose resumed handshakes skip the key
exchange TLS 1.3 makes (measured on this machine: 0.84 s of nginx CPU for 1,000 new streams
with TLS 1.2, 1.27 s with TLS 1.3; the gateway 1.43 s).

Versions: {'; '.join(f'{k}: {v}' for k, v in report['versions'].items())}.

## Targets

{targets_table(report)}

## Blocking chat-messages

Saturation: 32 connections, closed loop, {dur_note}. "Added" latency is the path's latency minus direct's at
the same offered load, half of dify-gateway's saturation ({report['saturation_rps'] * 0.5:.0f} req/s, open loop; each
path's median of {report['rounds']} interleaved runs by p99 there, one run at the other loads).

{blocking_table(report)}

dify-gateway CPU per request is {gw['cpu_us_per_request'] / max(ngx['cpu_us_per_request'], 0.001):.2f}× nginx's.
{instructions_text(report)}

### Latency (p50 / p99, ms) vs offered load (open loop, 64 connections)

{load_table(report)}

![latency vs offered load]({os.path.basename(png)})

## Upstream pooling

{pool['requests']} blocking requests over {pool['connections']} client connections through a fresh dify-gateway
with `max_connections: {pool.get('max_connections', '?')}` opened **{pool['handshakes']}** upstream TLS connections
(target: ≤ max_connections; errors: {pool['errors']}).

## SSE streams

Held streams, one event per second each (emulator `--token-delay-ms 1000`), opened at 2,000/s.
RSS per open stream = (peak RSS during the run − RSS before) / streams. CPU per event includes
accepting the connection and the upstream TLS handshake, spread over the stream's events.
The largest count runs {report.get('rounds', 1)} interleaved rounds with fresh proxies (its ramp loads both cores, so its
time to first event moves between runs); each path's row is its median run by time to first event p50.

{streams_table(report)}

### A ramp of new streams to a distant Dify

{report.get('ramp', {}).get('streams', RAMP_STREAMS)} held streams opened at {RAMP_RATE}/s (a rate one worker keeps up with), one
event per second each, while every new upstream connection waits
{report.get('ramp', {}).get('connect_delay_ms', RAMP_DELAY_MS)} ms before its TLS handshake (emulator `--connect-delay-ms`: the
connect and handshake round trips of a Dify 10 ms away). Each new stream needs an upstream
connection of its own; with `preconnect_ratio` 1.5 the gateway opens them ahead of demand.
On the 2,000 streams/s ramp above the worker is CPU-bound and preconnecting only adds
handshakes, which is why it is off by default. (direct: the load generator opens its own
connections before its clock starts, so its row holds no connection setup.)

{ramp_table(report)}

### A faster ramp to a farther Dify

{report.get('fast_ramp', {}).get('streams', FAST_RAMP_STREAMS)} held streams opened at {FAST_RAMP_RATE}/s while every new upstream
connection waits {report.get('fast_ramp', {}).get('connect_delay_ms', FAST_RAMP_DELAY_MS)} ms before its TLS handshake (a Dify 50 ms
away), so about {FAST_RAMP_RATE * FAST_RAMP_DELAY_MS // 1000} set-ups are under way at once. The gateway opens at most
`max_connecting` connections at once per worker (256); more set-ups than that would make new streams queue behind them.

{ramp_table(report, 'fast_ramp')}

## Microbenchmarks (Google Benchmark, CPU time per iteration)

{micro_table(report)}

{notes}## Commands

`$BUILD` is the CMake build directory, `$TMP` the run's scratch directory (certificates,
configs, logs; the configs are written by `bench/compare.py`), `$EMULATOR_CHAT_KEY` the
built-in chat app's key of dify-emulator (`config/emulator_apps.json`).

```
{chr(10).join(dict.fromkeys(report['commands']))}
```
"""
    with open(md, 'w') as f:
        f.write(text)
    with open(os.path.join(args.out, f'{day}.json'), 'w') as f:
        json.dump(report, f, indent=1, default=str)
    print(f'report: {md}')
    if args.update_readme:
        update_readme(report, md)
    return md


def update_readme(report, md):
    readme = os.path.join(ROOT, 'README.md')
    with open(readme) as f:
        text = f.read()
    block = (f"<!-- bench:begin -->\nFrom [{os.path.relpath(md, ROOT)}]({os.path.relpath(md, ROOT)}) "
             f"({report['machine']}):\n\n{targets_table(report)}\n\n{blocking_table(report)}\n\n"
             f"{streams_table(report)}\n<!-- bench:end -->")
    new, n = re.subn(r'<!-- bench:begin -->.*?<!-- bench:end -->', lambda _: block, text, flags=re.S)
    if n != 1:
        raise SystemExit('README.md has no <!-- bench:begin --> ... <!-- bench:end --> block')
    with open(readme, 'w') as f:
        f.write(new)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--build', default=os.path.join(ROOT, 'build'), help='CMake build directory (with benches)')
    p.add_argument('--workers', type=int, default=1, help='worker threads/processes of every proxy')
    p.add_argument('--duration', type=float, default=5.0, help='seconds per measured run')
    p.add_argument('--rounds', type=int, default=3, help='saturation runs per path (the median is reported)')
    p.add_argument('--streams', type=lambda s: [int(x) for x in s.split(',')], default=[1000, 9900],
                   help='held SSE stream counts (a one-worker proxy needs 2 fds per stream)')
    p.add_argument('--out', default=os.path.join(HERE, 'results'))
    p.add_argument('--quick', action='store_true', help='every step briefly (CI); figures not meaningful')
    p.add_argument('--update-readme', action='store_true', help="put the table into README.md's bench block")
    p.add_argument('--from-json', help='write the report again from a saved <date>.json (no measurements)')
    args = p.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            report = json.load(f)
        report['load'] = {n: {float(k): v for k, v in by.items()} for n, by in report['load'].items()}
        report['streams'] = {int(k): v for k, v in report['streams'].items()}
        write_report(report, args)
        return 0
    for tool in ('nginx', 'haproxy', 'redis-server', 'gnuplot'):
        if not shutil.which(tool):
            raise SystemExit(f'compare.py: {tool} not found (deploy/install_deps.sh bench installs it)')
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the stack is stopped (finally)
    report = run(args)
    write_report(report, args)
    bad = [n for n, r in report['blocking'].items() if r['errors'] != 0 or r['requests'] == 0]
    bad += [f'{n} streams {p}' for n, by in report['streams'].items() for p, r in by.items() if r['errors'] != 0]
    if bad:
        print('errors on: ' + ', '.join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
