#!/usr/bin/env python3
"""Starts dify-emulator (HTTPS, throwaway CA) and, optionally, dify-gateway in front of it,
on free loopback ports, for tests written in other languages.

As a library: `with Stack(emulator_bin, gateway_bin) as s: ...` gives s.emulator_url,
s.gateway_url, s.tenant_key, s.ca_file. As a command:
  stack.py --emulator BIN [--gateway BIN] -- COMMAND...
runs COMMAND with DIFY_EMULATOR_URL, DIFY_GATEWAY_URL, DIFY_GATEWAY_KEY, DIFY_GATEWAY_LIMITED_KEY,
REQUESTS_CA_BUNDLE and NODE_EXTRA_CA_CERTS set, and exits with its status.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CERTS = os.path.join(HERE, '..', '..', 'deploy', 'make_certs.sh')
TENANT_KEY = 'gw-seed-tenant-key-0123456789'
LIMITED_KEY = 'gw-seed-limited-key-0123456789'  # a second tenant: chat only, one request per second
OPENAI_TYPES = {'workflow': 'workflow', 'completion': 'completion'}  # how the OpenAI front calls them
APPS = {
    'chat': 'app-emuchat00000000000000001',
    'agent': 'app-emuagent0000000000000001',
    'chatflow': 'app-emuchatflow0000000000001',
    'workflow': 'app-emuworkflow0000000000001',
    'completion': 'app-emucompletion00000000001',
}


def _start(cmd, ready_word, env=None):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if ready_word not in line:
        proc.kill()
        raise RuntimeError(f'{cmd[0]} did not start: {line!r}')
    return proc, line.split()[3]  # "<name> listening on <url> (...)"


class Stack:
    def __init__(self, emulator_bin, gateway_bin=None):
        self.emulator_bin = emulator_bin
        self.gateway_bin = gateway_bin
        self.procs = []

    def __enter__(self):
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        subprocess.run([MAKE_CERTS, d], check=True)
        self.ca_file = os.path.join(d, 'ca.pem')
        emu, url = _start([self.emulator_bin, '--listen', '127.0.0.1:0', '--tls-cert', os.path.join(d, 'server.pem'),
                           '--tls-key', os.path.join(d, 'server.key')], 'listening on')
        self.procs.append(emu)
        self.emulator_url = url.replace('127.0.0.1', 'localhost')
        self.gateway_url = None
        self.tenant_key = TENANT_KEY
        if self.gateway_bin:
            config = {
                'server': {'listen': '127.0.0.1:0', 'threads': 2},
                'admin': {'listen': '127.0.0.1:0'},
                'log': {'level': 'warn', 'format': 'text'},
                'upstreams': {'dify': {'url': self.emulator_url, 'ca_file': self.ca_file}},
                'apps': {name: {'api_keys': [key], 'openai': {'type': OPENAI_TYPES.get(name, 'chat')}}
                         for name, key in APPS.items()},
                'tenants': {'seed': {'keys': [TENANT_KEY], 'apps': list(APPS), 'default_app': 'chat'},
                            'limited': {'keys': [LIMITED_KEY], 'apps': ['chat'],
                                        'rate': {'requests_per_second': 1, 'burst': 1}}},
            }
            path = os.path.join(d, 'gateway.json')
            with open(path, 'w') as f:
                json.dump(config, f)
            gw, url = _start([self.gateway_bin, '--config', path], 'listening on')
            self.procs.append(gw)
            self.gateway_url = url
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            p.terminate()  # SIGTERM: the gateway drains and exits 0
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=15))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append('hung')
        self.dir.cleanup()
        if exc[0] is None and any(code != 0 for code in codes):
            raise RuntimeError(f'servers did not stop cleanly on SIGTERM: exit codes {codes}')

    def env(self):
        env = dict(os.environ)
        env.update({'DIFY_EMULATOR_URL': self.emulator_url, 'REQUESTS_CA_BUNDLE': self.ca_file,
                    'NODE_EXTRA_CA_CERTS': self.ca_file, 'NO_PROXY': '*', 'no_proxy': '*'})
        if self.gateway_url:
            env.update({'DIFY_GATEWAY_URL': self.gateway_url, 'DIFY_GATEWAY_KEY': self.tenant_key,
                        'DIFY_GATEWAY_LIMITED_KEY': LIMITED_KEY})
        return env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--emulator', required=True)
    parser.add_argument('--gateway')
    parser.add_argument('command', nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command:
        parser.error('no COMMAND after --')
    with Stack(args.emulator, args.gateway) as s:
        sys.exit(subprocess.run(command, env=s.env()).returncode)


if __name__ == '__main__':
    main()
