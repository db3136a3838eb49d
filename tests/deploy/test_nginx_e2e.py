#!/usr/bin/env python3
"""deploy/ checked for real: Debian's nginx runs deploy/nginx.conf (only addresses and
paths changed) in front of two dify-gateway processes sharing a redis-server, in front of
dify-emulator over TLS. Also: `nginx -t`, the compose file and Dockerfile agree with the
config paths, and no key ever appears in the gateways' logs (debug level, access log on).

  test_nginx_e2e.py --emulator BIN --gateway BIN
"""
import argparse
import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'seed'))
from stack import APPS  # noqa: E402
from keepalive_probe import refusals_on_one_connection  # noqa: E402

TENANT_KEY = 'gw-nginx-e2e-key-0123456789'
UNLIMITED_KEY = 'gw-nginx-e2e-unlimited-0123456789'
MALLORY_KEY = 'gw-nginx-e2e-mallory-0123456789'
ARGS = None
S = {}  # the running stack


def read(*path):
    with open(os.path.join(*path)) as f:
        return f.read()


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


def wait_for_line(path, word, proc, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if word in line:
                        return line
        if proc.poll() is not None:
            raise RuntimeError(f'{proc.args[0]} exited: {read(path) if os.path.exists(path) else ""}')
        time.sleep(0.02)
    raise RuntimeError(f'{proc.args[0]} not ready')


def start(cmd, log, word):
    out = open(log, 'w')
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    line = wait_for_line(log, word, proc)
    return proc, line


def start_gateway(i, log):
    gw, _ = start([ARGS.gateway, '--config', f'{S["tmp"]}/gateway-{i}.json'], f'{S["tmp"]}/{log}', 'listening on')
    S['procs'].append(gw)
    return gw


def adapted_nginx_conf(listen_port, gateway_ports, tmp):
    """deploy/nginx.conf with loopback addresses and temporary paths; nothing else."""
    text = read(ROOT, 'deploy', 'nginx.conf')
    text = text.replace('server gateway-1:8080;', f'server 127.0.0.1:{gateway_ports[0]};')
    text = text.replace('server gateway-2:8080;', f'server 127.0.0.1:{gateway_ports[1]};')
    text = text.replace('listen 80;', f'listen 127.0.0.1:{listen_port};')
    text = text.replace('/var/log/nginx/access.log', os.path.join(tmp, 'nginx-access.log'))
    assert f'127.0.0.1:{gateway_ports[1]}' in text and f'listen 127.0.0.1:{listen_port}' in text
    return text


def setUpModule():
    tmp = tempfile.mkdtemp(prefix='gw-nginx-')
    os.chmod(tmp, 0o777)
    S['tmp'] = tmp
    S['procs'] = []
    subprocess.run([os.path.join(ROOT, 'deploy', 'make_certs.sh'), tmp], check=True)
    emu, line = start([ARGS.emulator, '--listen', '127.0.0.1:0', '--tls-cert', f'{tmp}/server.pem',
                       '--tls-key', f'{tmp}/server.key', '--token-delay-ms', '150'], f'{tmp}/emulator.log', 'listening on')
    S['procs'].append(emu)
    S['emulator'] = line.split()[3].replace('127.0.0.1', 'localhost')
    redis_port = free_port()
    redis = subprocess.Popen(['redis-server', '--port', str(redis_port), '--bind', '127.0.0.1', '--save', '',
                              '--appendonly', 'no', '--logfile', f'{tmp}/redis.log'])
    S['procs'].append(redis)
    for _ in range(500):
        try:
            socket.create_connection(('127.0.0.1', redis_port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.01)
    config = {
        'server': {'listen': '127.0.0.1:0', 'threads': 2, 'drain_timeout_ms': 20000, 'trusted_proxies': ['127.0.0.1']},
        'admin': {'listen': '127.0.0.1:0'},
        'log': {'level': 'trace', 'format': 'json', 'access_log': True},
        'upstreams': {'dify': {'url': S['emulator'], 'ca_file': f'{tmp}/ca.pem'}},
        'apps': {name: {'api_keys': [key]} for name, key in APPS.items()},
        'tenants': {'e2e': {'keys': [TENANT_KEY], 'apps': list(APPS), 'default_app': 'chat',
                            'rate': {'requests_per_second': 0.001, 'burst': 30}},
                    'unlimited': {'keys': [UNLIMITED_KEY], 'apps': ['workflow']},
                    'mallory': {'keys': [MALLORY_KEY], 'apps': ['workflow']}},
        # A loaded test machine (sanitizers, parallel tests) must not turn a slow Redis reply
        # into a refusal: the default 20 ms is for production.
        'quota_store': {'type': 'redis', 'url': f'redis://127.0.0.1:{redis_port}/0', 'on_error': 'deny',
                        'timeout_ms': 2000},
    }
    S['gateways'] = []
    ports = [free_port(), free_port()]  # fixed: a replica restarts on its own port
    for i in range(2):
        config['server']['listen'] = f'127.0.0.1:{ports[i]}'
        with open(f'{tmp}/gateway-{i}.json', 'w') as f:
            json.dump(config, f)
        S['gateways'].append(start_gateway(i, f'gateway-{i}.log'))
    nginx_port = free_port()
    with open(f'{tmp}/nginx.conf', 'w') as f:
        f.write(adapted_nginx_conf(nginx_port, ports, tmp))
    S['nginx_cmd'] = ['nginx', '-p', f'{tmp}/', '-c', f'{tmp}/nginx.conf', '-g',
                      f'daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log;']
    nginx = subprocess.Popen(S['nginx_cmd'])
    S['procs'].append(nginx)
    S['base'] = f'http://127.0.0.1:{nginx_port}'
    for _ in range(500):
        try:
            requests.get(S['base'] + '/v1/info', timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.01)
    os.environ['NO_PROXY'] = '*'


def tearDownModule():
    for p in reversed(S.get('procs', [])):
        if p.poll() is None:
            p.terminate()
    for p in S.get('procs', []):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def headers():
    return {'Authorization': f'Bearer {TENANT_KEY}'}


class ThroughNginx(unittest.TestCase):
    def test_1_nginx_t_accepts_the_config(self):
        r = subprocess.run(S['nginx_cmd'][:5] + ['-t', '-g', f'pid {S["tmp"]}/t.pid; error_log {S["tmp"]}/t.log;'],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_2_blocking_call(self):
        trace = '4bf92f3577b34da6a3ce929d0e0e4736'
        r = requests.post(S['base'] + '/v1/chat-messages',
                          headers={**headers(), 'traceparent': f'00-{trace}-00f067aa0ba902b7-01'},
                          json={'inputs': {}, 'query': 'through nginx', 'response_mode': 'blocking', 'user': 'u1'})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()['answer'], 'Turn 1. You said: "through nginx".')
        self.assertTrue(r.headers.get('X-Request-Id'))
        S['traced'] = (r.headers['X-Request-Id'], trace)  # its access line is checked in test_6

    def test_3_first_event_arrives_while_dify_still_streams(self):
        query = ' '.join(f'word{i}' for i in range(16))  # ~10 events, 150 ms apart
        r = requests.post(S['base'] + '/v1/chat-messages', headers=headers(), stream=True,
                          json={'inputs': {}, 'query': query, 'response_mode': 'streaming', 'user': 'u2'})
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.headers['Content-Type'], 'text/event-stream; charset=utf-8')
        arrivals = []
        events = []
        start = time.monotonic()
        for line in r.iter_lines():
            if line.startswith(b'data: '):
                arrivals.append(time.monotonic() - start)
                events.append(json.loads(line[6:]))
        self.assertEqual(events[-1]['event'], 'message_end')
        # Unbuffered: the events arrive spread out as the emulator sends them, not in one go.
        self.assertGreater(arrivals[-1] - arrivals[0], 0.15 * (len(arrivals) - 2))

    def test_4_quotas_hold_across_the_two_replicas(self):
        statuses = [requests.get(S['base'] + '/v1/parameters', headers=headers()).status_code for _ in range(40)]
        ok = statuses.count(200)
        # The burst of 30 is shared through Redis: the earlier tests used a few of it.
        self.assertLessEqual(ok, 30)
        self.assertGreaterEqual(ok, 30 - 8)
        self.assertEqual(statuses.count(429), 40 - ok)

    def test_4b_a_body_left_unread_is_never_the_next_request(self):
        # nginx reuses its upstream connections across clients: a body the gateway did not
        # read after answering early would be parsed as the next request on that connection,
        # and its answer would go to whichever client nginx sends there next.
        def run(key, topic):
            r = requests.post(S['base'] + '/v1/workflows/run', headers={'Authorization': f'Bearer {key}'},
                              json={'inputs': {'topic': topic}, 'response_mode': 'blocking', 'user': 'u'})
            self.assertEqual(r.status_code, 200, r.text)
            return r.json()
        victim_run = run(UNLIMITED_KEY, 'victim')['workflow_run_id']
        injected = json.dumps({'inputs': {'topic': 'injected'}, 'response_mode': 'blocking', 'user': 'x'})
        smuggled = (f'POST /v1/workflows/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MALLORY_KEY}\r\n'
                    f'Content-Type: application/json\r\nContent-Length: {len(injected)}\r\n\r\n{injected}')
        for _ in range(4):
            r = requests.get(S['base'] + f'/v1/workflows/run/{victim_run}', data=smuggled,
                             headers={'Authorization': f'Bearer {MALLORY_KEY}'})
            self.assertEqual(r.status_code, 404, r.text)  # another tenant's run
        for i in range(8):
            outputs = run(UNLIMITED_KEY, f'mine{i}')['data']['outputs']
            self.assertIn(f'mine{i}', json.dumps(outputs))
            self.assertNotIn('injected', json.dumps(outputs))

    def test_4c_refusals_keep_the_clients_connection(self):
        # A gateway that answered before the body arrived made nginx close the client's
        # keep-alive connection after the answer (2-10% of following requests failed).
        statuses, reconnects, closing = refusals_on_one_connection(S['base'], ['gw-not-a-key-0123456789', TENANT_KEY], 120)
        self.assertEqual(set(statuses), {401, 429}, statuses)  # 429: the e2e tenant's burst is spent
        self.assertEqual((reconnects, closing), (0, 0))

    def test_4d_a_rolling_restart_under_load_fails_no_request(self):
        stop = threading.Event()
        done = collections.Counter()
        failures = []

        def load():
            session = requests.Session()  # keep-alive, as Dify's SDKs
            while not stop.is_set():
                try:
                    r = session.post(S['base'] + '/v1/files/upload', headers={'Authorization': f'Bearer {UNLIMITED_KEY}'},
                                     files={'file': ('a.txt', b'hello', 'text/plain')}, data={'user': 'u'}, timeout=30)
                    done[r.status_code] += 1
                    if r.status_code != 201:
                        failures.append(f'{r.status_code} {r.text[:200]}')
                except requests.RequestException as e:
                    failures.append(repr(e))

        def wait_for(total):
            while sum(done.values()) < total and not failures:
                time.sleep(0.01)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_for(100)
            old = S['gateways'][0]
            old.send_signal(signal.SIGTERM)  # drains while nginx keeps sending
            self.assertEqual(old.wait(timeout=30), 0)
            before = sum(done.values())
            S['gateways'][0] = start_gateway(0, 'gateway-0-restarted.log')
            wait_for(before + 200)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(failures, [])
        self.assertGreater(done[201], 300)

    def test_5_sigterm_during_a_stream_drains_without_truncation(self):
        r = requests.post(S['base'] + '/apps/workflow/v1/workflows/run', stream=True,
                          headers={'Authorization': f'Bearer {UNLIMITED_KEY}'},
                          json={'inputs': {'topic': 'a b c d e f g h i j'}, 'response_mode': 'streaming', 'user': 'u3'})
        self.assertEqual(r.status_code, 200, r.text)
        lines = r.iter_lines()
        first = next(l for l in lines if l.startswith(b'data: '))
        for gw in S['gateways']:
            gw.send_signal(signal.SIGTERM)
        events = [json.loads(first[6:])] + [json.loads(l[6:]) for l in lines if l.startswith(b'data: ')]
        self.assertEqual(events[-1]['event'], 'workflow_finished')
        self.assertEqual(events[-1]['data']['status'], 'succeeded')
        for gw in S['gateways']:
            self.assertEqual(gw.wait(timeout=30), 0)

    def test_6_no_key_in_any_log_line(self):
        secrets = [TENANT_KEY, UNLIMITED_KEY] + list(APPS.values())
        for name in ('gateway-0.log', 'gateway-1.log', 'gateway-0-restarted.log'):
            text = read(S['tmp'], name)
            for secret in secrets:
                self.assertNotIn(secret, text, f'{secret} leaked into {name}')
            if name != 'gateway-0-restarted.log':  # nginx may not have sent it anything yet
                self.assertIn('"type":"access"', text)
                # Clients are logged from X-Forwarded-For set by nginx (a trusted proxy).
                self.assertIn('"client":"127.0.0.1"', text)
        # The access line names the caller's trace (and the gateway's span in it).
        request_id, trace = S['traced']
        lines = [json.loads(line) for name in ('gateway-0.log', 'gateway-1.log', 'gateway-0-restarted.log')
                 for line in read(S['tmp'], name).splitlines() if '"type":"access"' in line]
        traced = [line for line in lines if line['request_id'] == request_id]
        self.assertEqual(len(traced), 1)
        self.assertEqual(traced[0]['trace_id'], trace)
        self.assertRegex(traced[0]['span_id'], r'^[0-9a-f]{16}$')


class DeployFiles(unittest.TestCase):
    def test_compose_and_dockerfile_agree_with_the_config(self):
        compose = read(ROOT, 'deploy', 'docker-compose.yml')
        dockerfile = read(ROOT, 'deploy', 'Dockerfile')
        config_text = read(ROOT, 'deploy', 'config', 'gateway.json')
        nginx_conf = read(ROOT, 'deploy', 'nginx.conf')
        self.assertIn('./config:/etc/dify-gateway:ro', compose)  # the directory: edits are seen by a reload
        self.assertIn('./nginx.conf:/etc/nginx/nginx.conf', compose)
        self.assertIn('COPY deploy/config/gateway.json /etc/dify-gateway/gateway.json', dockerfile)
        self.assertIn('USER gateway', dockerfile)
        self.assertRegex(dockerfile, r'HEALTHCHECK .*127\.0\.0\.1:9901/healthz')
        self.assertIn('"listen": "0.0.0.0:9901"', config_text)
        self.assertIn('"listen": "0.0.0.0:8080"', config_text)
        for path in re.findall(r'^COPY (?!--from)(\S+)', dockerfile, re.M):
            self.assertTrue(os.path.exists(os.path.join(ROOT, path)), path)
        # Stop order and grace periods: the gateways stop first (they depend on nginx), and
        # every grace period covers the drain before it.
        graces = [int(g) for g in re.findall(r'stop_grace_period: (\d+)s', compose)]
        gateway_grace, nginx_grace = graces[0], graces[1]
        drain_ms = int(re.search(r'"drain_timeout_ms": (\d+)', config_text).group(1))
        self.assertLess(drain_ms, gateway_grace * 1000)
        self.assertLess(gateway_grace, nginx_grace)
        self.assertIn('depends_on: [redis, nginx]', compose)
        # nginx closes idle upstream connections before a draining gateway does.
        keepalive_s = int(re.search(r'keepalive_timeout (\d+)s;', nginx_conf).group(1))
        grace_ms = int(re.search(r'"drain_idle_grace_ms": (\d+)', config_text).group(1))
        self.assertLess(keepalive_s * 1000, grace_ms)
        # nginx is the trusted proxy, by its fixed address.
        nginx_ip = re.search(r'nginx:.*?ipv4_address: ([0-9.]+)', compose, re.S).group(1)
        self.assertIn(f'"trusted_proxies": ["{nginx_ip}"]', config_text)
        # Every package the build stage installs is one the README names.
        readme = read(ROOT, 'README.md') + read(ROOT, 'deploy', 'install_deps.sh')
        for pkg in ('libboost1.81-dev', 'libboost-json1.81-dev', 'libboost-url1.81-dev', 'libssl-dev', 'libspdlog-dev',
                    'libhiredis-dev'):
            self.assertIn(pkg, dockerfile)
            self.assertIn(pkg, readme)

    def test_the_container_config_validates(self):
        env = dict(os.environ, DIFY_URL='https://api.dify.ai', DIFY_CA_FILE='', DIFY_CHAT_APP_KEY='app-x',
                   DIFY_WORKFLOW_APP_KEY='app-y', DEMO_TENANT_KEY='demo-tenant-key-0123456789', ADMIN_TOKEN='')
        r = subprocess.run([ARGS.gateway, '--check-config', os.path.join(ROOT, 'deploy', 'config', 'gateway.json')],
                           env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument('--emulator', required=True)
    parser.add_argument('--gateway', required=True)
    ARGS, rest = parser.parse_known_args()
    result = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() and not result.skipped else 1)


if __name__ == '__main__':
    main()
