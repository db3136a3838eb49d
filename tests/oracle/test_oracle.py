#!/usr/bin/env python3
"""Differential test: requests a hostile tenant would send, through dify-gateway to an
oracle that reads them the way Dify's stack does (tests/oracle/dify_oracle.py: Flask and
Werkzeug from Debian under gunicorn). Wherever Werkzeug reads a `user`, it must be the
sending tenant's namespaced one; the route Werkzeug matched must be the route the gateway
classified (its access log's endpoint); what the gateway refuses must not reach the oracle.
The HTTP request fuzzer's seed corpus goes through the same checks.

Usage: test_oracle.py --gateway BIN   (prints "N passed, M failed"; exit 1 on a failure)
"""
import argparse
import base64
import glob
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, '..', 'fuzz', 'corpus', 'http_request_fuzz')
KEYS = {'alpha': 'gw-alpha-oracle-key-0123456789', 'beta': 'gw-fuzz-tenant-key-0123456789',
        'ops': 'gw-ops-oracle-key-000123456789'}


class Stack:
    """gunicorn + the oracle, and dify-gateway in front of it, on free loopback ports."""

    def __init__(self, gateway_bin):
        self.gateway_bin = gateway_bin
        self.log_lines = []

    def __enter__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.oracle = subprocess.Popen(
            ['/usr/bin/python3', '-m', 'gunicorn', '-b', '127.0.0.1:0', '-w', '1', '--chdir', HERE, 'dify_oracle:app'],
            stderr=subprocess.PIPE, text=True)
        port = None
        for line in self.oracle.stderr:
            m = re.search(r'Listening at: http://127\.0\.0\.1:(\d+)', line)
            if m:
                port = int(m.group(1))
                break
        if not port:
            raise RuntimeError('the oracle did not start')
        threading.Thread(target=lambda: [None for _ in self.oracle.stderr], daemon=True).start()
        config = {
            'server': {'listen': '127.0.0.1:0', 'threads': 1},
            'admin': {'listen': '127.0.0.1:0'},
            'log': {'level': 'warn', 'format': 'json', 'access_log': True},
            'upstreams': {'oracle': {'url': f'http://127.0.0.1:{port}', 'retry': {'max_attempts': 1}},
                          'dead': {'url': 'http://127.0.0.1:1', 'retry': {'max_attempts': 1}}},
            'apps': {'shared': {'upstream': 'oracle', 'api_keys': ['app-oracle-shared']},
                     'solo': {'upstream': 'oracle', 'api_keys': ['app-oracle-solo']},
                     'dead': {'upstream': 'dead', 'api_keys': ['app-oracle-dead']}},
            'tenants': {
                'alpha': {'keys': [KEYS['alpha']], 'apps': ['shared', 'solo'], 'default_app': 'shared'},
                'beta': {'keys': [KEYS['beta']], 'apps': ['shared', 'dead'], 'default_app': 'shared'},
                'ops': {'keys': [KEYS['ops']], 'apps': ['shared'], 'admin_apps': ['shared']},
            },
        }
        path = os.path.join(self.dir.name, 'gateway.json')
        with open(path, 'w') as f:
            json.dump(config, f)
        self.gateway = subprocess.Popen([self.gateway_bin, '--config', path], stdout=subprocess.PIPE, text=True)
        first = self.gateway.stdout.readline()
        m = re.search(r'listening on http://127\.0\.0\.1:(\d+)', first)
        if not m:
            raise RuntimeError(f'the gateway did not start: {first!r}')
        self.port = int(m.group(1))
        threading.Thread(target=self._collect, daemon=True).start()
        return self

    def _collect(self):
        for line in self.gateway.stdout:
            self.log_lines.append(line)

    def __exit__(self, *exc):
        for p in (self.gateway, self.oracle):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.dir.cleanup()

    def endpoints(self, request_ids, timeout=5.0):
        """The access log's endpoint per request id (lines are flushed once a second)."""
        deadline = time.monotonic() + timeout
        while True:
            found = {}
            for line in list(self.log_lines):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get('request_id') in request_ids:
                    found[rec['request_id']] = rec.get('endpoint')
            if len(found) == len(request_ids) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)  # polling the log of another process: there is nothing to await


class Reply:
    def __init__(self, resp, body):
        self.status = resp.status
        self.headers = resp.headers
        self.body = body
        seen = resp.getheader('X-Oracle-Seen')
        self.seen = json.loads(base64.b64decode(seen)) if seen else None
        self.request_id = resp.getheader('X-Request-Id')

    @property
    def forwarded(self):
        return self.seen is not None


def exchange(port, raw, method_hint='GET', then=None):
    """Sends raw bytes on a new connection; returns the first reply, and the reply to `then`
    (a second raw request on the same connection) when given."""
    with socket.create_connection(('127.0.0.1', port), timeout=10) as s:
        s.sendall(raw)
        r1 = read_reply(s, method_hint)
        if then is None:
            return r1
        try:
            s.sendall(then)
            r2 = read_reply(s, 'GET')
        except (OSError, http.client.HTTPException):
            r2 = None  # the gateway closed the connection: nothing smuggled either
        return r1, r2


def read_reply(sock, method):
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    body = resp.read()
    return Reply(resp, body)


def request(tenant, method, path, headers=(), body=b''):
    lines = [f'{method} {path} HTTP/1.1', 'Host: gateway', f'Authorization: Bearer {KEYS[tenant]}']
    lines += list(headers)
    if body and not any(h.lower().startswith(('content-length', 'transfer-encoding')) for h in headers):
        lines.append(f'Content-Length: {len(body)}')
    return ('\r\n'.join(lines) + '\r\n\r\n').encode() + body


def json_request(tenant, method, path, obj, headers=()):
    return request(tenant, method, path, ['Content-Type: application/json', *headers], json.dumps(obj).encode())


def multipart(parts, boundary='XyZ'):
    out = b''
    for headers, data in parts:
        out += f'--{boundary}\r\n'.encode() + headers.encode() + b'\r\n\r\n' + data + b'\r\n'
    return out + f'--{boundary}--\r\n'.encode()


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []
        self.classified = {}  # request id -> oracle route, checked against the access log

    def check(self, name, ok, detail=''):
        if ok:
            self.passed += 1
        else:
            self.failed.append(f'{name}: {detail}')
            print(f'FAIL {name}: {detail}', flush=True)

    def invariants(self, name, tenant, r):
        """What holds for every reply: a `user` Werkzeug reads is the tenant's."""
        if not r.forwarded:
            return
        users = list(r.seen.get('users', [])) + ([r.seen['user']] if r.seen.get('user') is not None else [])
        bad = [u for u in users if not str(u).startswith(tenant + ':')]
        self.check(f'{name}: user namespaced', not bad, f'Werkzeug read {bad!r}')
        if r.request_id and r.status == 200:
            self.classified[r.request_id] = (name, r.seen['route'])

    def refused(self, name, r, status):
        self.check(f'{name}: refused {status}', r.status == status and not r.forwarded,
                   f'got {r.status}, forwarded={r.forwarded}, body={r.body[:200]!r}')


def run(port, stack):
    c = Checks()
    A = 'alpha:alice'

    def send(name, tenant, raw, method='GET'):
        r = exchange(port, raw, method)
        c.invariants(name, tenant, r)
        return r

    # Paths are canonicalized as Werkzeug reads them, and forwarded canonical.
    for path in ['/v1//chat-messages', '/v1/chat%2Dmessages', '/v1/./x/../chat-messages', '/v1/chat-messages/',
                 '/apps/shared/v1//chat-messages']:
        r = send(f'path {path}', 'beta', json_request('beta', 'POST', path, {'query': 'q', 'inputs': {}, 'user': A}), 'POST')
        c.check(f'path {path}: canonical', r.forwarded and r.seen['path'] == '/v1/chat-messages' and
                r.seen['user'] == 'beta:' + A, f'{r.status} {r.seen}')
    for path in ['/v1/chat-messages%zz', '/v1/%00', '/../v1/info', '/v1/%FF']:
        c.refused(f'path {path}', send(f'path {path}', 'beta', request('beta', 'GET', path)), 400)
    c.refused('unknown route', send('unknown route', 'beta', request('beta', 'GET', '/v1/datasets')), 404)
    c.refused('wrong method', send('wrong method', 'beta', request('beta', 'GET', '/v1/chat-messages')), 405)

    # Methods: lower-case and unknown methods are refused; HEAD is read as GET.
    c.refused('lower-case method', send('lower-case method', 'beta',
                                         json_request('beta', 'post', '/v1/chat-messages', {'user': A})), 405)
    c.refused('OPTIONS', send('OPTIONS', 'beta', request('beta', 'OPTIONS', '/v1/info')), 405)
    r = send('HEAD', 'beta', request('beta', 'HEAD', f'/v1/conversations?user={A}'), 'HEAD')
    c.check('HEAD rewrites the query as GET', r.forwarded and r.seen['user'] == 'beta:' + A, f'{r.status} {r.seen}')
    # A HEAD reply has no body, even for an event stream: the next reply on the connection
    # must be the next request's.
    r1, r2 = exchange(port, request('beta', 'HEAD', f'/v1/workflow/{uuid.uuid4()}/events?user=u'), 'HEAD',
                      then=request('beta', 'GET', '/v1/parameters'))
    c.check('HEAD of an event stream: no body', r1.forwarded and r1.body == b'' and r2 is not None and r2.forwarded and
            r2.seen['route'] == 'GET /parameters', f'{r1.status} {r2 and r2.status}')
    r = send('GET of an event stream', 'beta', request('beta', 'GET', f'/v1/workflow/{uuid.uuid4()}/events?user={A}'))
    c.check('re-attach stream relayed, user namespaced', r.forwarded and r.body.startswith(b'data: ') and
            r.seen['user'] == 'beta:' + A, f'{r.status} {r.body[:100]!r}')

    # Framing and content headers that parsers could read differently.
    body = json.dumps({'query': 'q', 'inputs': {}, 'user': A}).encode()
    c.refused('two Content-Types', send('two Content-Types', 'beta', request(
        'beta', 'POST', '/v1/chat-messages', ['Content-Type: text/plain', 'Content-Type: application/json'], body)), 400)
    chunked = hex(len(body))[2:].encode() + b'\r\n' + body + b'\r\n0\r\nContent-Type: application/json\r\n\r\n'
    c.refused('trailer', send('trailer', 'beta', request(
        'beta', 'POST', '/v1/chat-messages', ['Content-Type: text/plain', 'Transfer-Encoding: chunked'], chunked)), 400)
    for te in ['gzip', 'gzip, chunked', 'chunked, chunked']:
        c.refused(f'Transfer-Encoding {te}', send(f'TE {te}', 'beta', request(
            'beta', 'POST', '/v1/chat-messages', ['Content-Type: application/json', f'Transfer-Encoding: {te}'],
            chunked)), 400)
    # Python's str.strip() removes some control characters and non-ASCII spaces around a
    # Content-Type (Werkzeug then sees JSON) where a C++ trim would not.
    for name, ct in [('VT', b'application/json\x0b'), ('NBSP', b'application/json\xa0'), ('FS', b'\x1capplication/json')]:
        raw = request('beta', 'POST', '/v1/chat-messages', [], body).replace(
            b'\r\n\r\n', b'\r\nContent-Type: ' + ct + b'\r\n\r\n', 1)
        c.refused(f'Content-Type with {name}', send(f'Content-Type {name}', 'beta', raw, 'POST'), 400)
    # Werkzeug takes the first run of characters that are not ';', ',' or whitespace as the
    # media type: anything after it must not hide a JSON or form body from the gateway.
    for ct in ['application/json x', 'application/json,text/plain', 'application/json\tx', 'application/json (x)',
               'application/x+json x']:
        c.refused(f'Content-Type {ct!r}', send(f'Content-Type {ct!r}', 'beta', request(
            'beta', 'POST', '/v1/chat-messages', [f'Content-Type: {ct}'], body), 'POST'), 400)
    c.refused('folded Content-Type', send('folded Content-Type', 'beta', request(
        'beta', 'POST', '/v1/chat-messages', ['Content-Type: application/json\r\n x'], body), 'POST'), 400)
    c.refused('url-encoded Content-Type with a comma', send('form CT comma', 'beta', request(
        'beta', 'POST', '/v1/audio-to-text', ['Content-Type: application/x-www-form-urlencoded,'], b'user=alpha%3Aalice'),
        'POST'), 400)
    c.refused('Content-Encoding', send('Content-Encoding', 'beta', request(
        'beta', 'POST', '/v1/chat-messages', ['Content-Type: application/json', 'Content-Encoding: gzip'], body)), 400)
    r = send('chunked JSON', 'beta', request('beta', 'POST', '/v1/chat-messages',
                                              ['Content-Type: application/json', 'Transfer-Encoding: chunked'],
                                              hex(len(body))[2:].encode() + b'\r\n' + body + b'\r\n0\r\n\r\n'), 'POST')
    c.check('chunked JSON rewritten', r.forwarded and r.seen['user'] == 'beta:' + A, f'{r.status}')
    r = send('+json', 'beta', request('beta', 'POST', '/v1/chat-messages', ['Content-Type: application/vnd.x+json'], body))
    c.check('+json rewritten', r.forwarded and r.seen['user'] == 'beta:' + A, f'{r.status} {r.body[:100]!r}')
    r = send('duplicate user keys', 'beta', request('beta', 'POST', '/v1/chat-messages', ['Content-Type: application/json'],
                                                    b'{"query":"q","inputs":{},"user":"x","user":"alpha:alice"}'), 'POST')
    c.check('duplicate user keys: one, namespaced', r.forwarded and r.seen['user'].startswith('beta:'), f'{r.status}')

    # Multipart bodies Werkzeug could split differently from the gateway: refused.
    file_part = ('Content-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain', b'hello')
    tricky = {
        'duplicate boundary': ('multipart/form-data; boundary=XyZ; boundary=Other', [
            ('Content-Disposition: form-data; name="user"', A.encode()), file_part]),
        'name*': ('multipart/form-data; boundary=XyZ', [
            ("Content-Disposition: form-data; name=\"x\"; name*=UTF-8''user", A.encode()), file_part]),
        'two Content-Dispositions': ('multipart/form-data; boundary=XyZ', [
            ('Content-Disposition: form-data; name="x"\r\nContent-Disposition: form-data; name="user"', A.encode()),
            file_part]),
        'folded part header': ('multipart/form-data; boundary=XyZ', [
            ('Content-Disposition: form-data;\r\n name="user"', A.encode()), file_part]),
        'bare LF part header': ('multipart/form-data; boundary=XyZ', [
            ('Content-Disposition: form-data; name="x"\nContent-Disposition: form-data; name="user"', A.encode()),
            file_part]),
        'escaped quote in name': ('multipart/form-data; boundary=XyZ', [
            ('Content-Disposition: form-data; name="us\\"er"', A.encode()), file_part]),
        'boundary after a bare LF': ('multipart/form-data; boundary=XyZ', [
            ('Content-Disposition: form-data; name="x"',
             b'a\n--XyZ\r\nContent-Disposition: form-data; name="user"\r\n\r\nalpha:alice'),
            ('Content-Disposition: form-data; name="user"', b'bob')]),
        'boundary after a bare CR': ('multipart/form-data; boundary=XyZ', [
            ('Content-Disposition: form-data; name="x"',
             b'a\r--XyZ\r\nContent-Disposition: form-data; name="user"\r\n\r\nalpha:alice'),
            ('Content-Disposition: form-data; name="user"', b'bob')]),
        'boundary continuation': ('multipart/form-data; boundary=XyZ; boundary*1=BBB', [
            ('Content-Disposition: form-data; name="user"', A.encode()), file_part]),
        'space before ;': ('multipart/form-data; boundary=XyZ ;x=y', [
            ('Content-Disposition: form-data; name="user"', A.encode()), file_part]),
        'control character before a part header': ('multipart/form-data; boundary=XyZ', [
            ('\x1cContent-Disposition: form-data; name="user"\r\nContent-Disposition: form-data; name="x"', A.encode()),
            ('Content-Disposition: form-data; name="user"', b'bob')]),
        'charset on the user part': ('multipart/form-data; boundary=XyZ', [
            ('Content-Disposition: form-data; name="user"\r\nContent-Type: text/plain; charset=utf-16', A.encode('utf-16-le')),
            file_part]),
    }
    for name, (ct, parts) in tricky.items():
        c.refused(f'multipart {name}', send(f'multipart {name}', 'beta', request(
            'beta', 'POST', '/v1/files/upload', [f'Content-Type: {ct}'], multipart(parts)), 'POST'), 400)
    c.refused('request charset', send('request charset', 'beta', request(
        'beta', 'POST', '/v1/chat-messages', ['Content-Type: application/json; charset=utf-16'], A.encode('utf-16')), 'POST'), 400)
    # A `user` where the route does not read it: namespaced in the query all the same.
    r = send('query user on a JSON route', 'beta', json_request('beta', 'POST', f'/v1/chat-messages?user={A}',
                                                                {'query': 'q', 'inputs': {}}), 'POST')
    c.check('query user on a JSON route namespaced', r.forwarded and r.seen['users'][0] == 'beta:' + A, f'{r.seen}')
    r = send('query user on a plain route', 'beta', request('beta', 'GET', f'/v1/parameters?user={A}'))
    c.check('query user on a plain route namespaced', r.forwarded and r.seen['users'] == ['beta:' + A], f'{r.seen}')
    r = send('multipart user', 'beta', request('beta', 'POST', '/v1/files/upload', ['Content-Type: multipart/form-data; boundary=XyZ'],
                                               multipart([('Content-Disposition: form-data; name="user"', A.encode()),
                                                          file_part])), 'POST')
    c.check('multipart user namespaced', r.forwarded and r.seen['user'] == 'beta:' + A, f'{r.status} {r.body[:200]!r}')
    r = send('url-encoded form', 'beta', request('beta', 'POST', '/v1/audio-to-text',
                                                 ['Content-Type: application/x-www-form-urlencoded'],
                                                 b'user=alpha%3Aalice&x=1'), 'POST')
    c.check('url-encoded user namespaced', r.forwarded and r.seen['user'] == 'beta:' + A, f'{r.status}')

    # Ids Dify does not scope: alpha's message, conversation and workflow run.
    a = exchange(port, json_request('alpha', 'POST', '/v1/chat-messages', {'query': 'q', 'inputs': {}, 'user': 'alice'}), 'POST')
    c.check('alpha chats', a.status == 200 and a.forwarded, f'{a.status}')
    run_reply = exchange(port, json_request('alpha', 'POST', '/v1/workflows/run', {'inputs': {}, 'user': 'alice'}), 'POST')
    alpha_run = json.loads(run_reply.body)['workflow_run_id']
    alpha_message = json.loads(a.body)['message_id']
    alpha_conversation = json.loads(a.body)['conversation_id']
    r = send('text-to-audio of alpha\'s message', 'beta',
             json_request('beta', 'POST', '/v1/text-to-audio', {'message_id': alpha_message, 'user': 'bob'}), 'POST')
    c.refused("beta: alpha's message (text-to-audio)", r, 404)
    r = send('feedback on alpha\'s message', 'beta',
             json_request('beta', 'POST', f'/v1/messages/{alpha_message.upper()}/feedbacks', {'rating': 'like'}), 'POST')
    c.refused("beta: alpha's message (feedback)", r, 404)
    c.refused("beta: alpha's run via //", send('run //', 'beta', request('beta', 'GET', f'/v1//workflows/run/{alpha_run}')), 404)
    # Other spellings of one UUID that PostgreSQL (and Python's uuid.UUID) resolve to the same row.
    hexdigits = alpha_run.replace('-', '')
    for spelling in [hexdigits.upper(), '%7B' + alpha_run + '%7D', '-'.join(hexdigits[i:i + 4] for i in range(0, 32, 4)),
                     'urn:uuid:' + alpha_run]:
        c.refused(f"beta: alpha's run spelled {spelling}",
                  send('run spelling', 'beta', request('beta', 'GET', f'/v1/workflows/run/{spelling}')), 404)
    c.refused("beta: alpha's conversation via %2D", send('conv', 'beta', json_request(
        'beta', 'POST', '/v1/chat%2Dmessages', {'query': 'q', 'inputs': {}, 'user': A, 'conversation_id': alpha_conversation})), 404)
    # JSON bodies go to Dify as they came, only `user` replaced: what Python's json reads in
    # them must be what the gateway checked.
    def raw_json(tenant, path, text):
        return request(tenant, 'POST', path, ['Content-Type: application/json'], text.encode())
    for name, text in [
            ('foreign conversation last', '{"query":"q","inputs":{},"conversation_id":"%s","conversation_id":"%s"}'
             % (str(uuid.uuid4()), alpha_conversation)),
            ('foreign conversation escaped name', '{"query":"q","inputs":{},"conversation\\u005fid":"%s"}' % alpha_conversation),
            ('foreign message in a repeated member', '{"message_id":"%s","message_id":"%s"}' % (str(uuid.uuid4()), alpha_message))]:
        path = '/v1/text-to-audio' if 'message' in name else '/v1/chat-messages'
        c.refused(f'beta: {name}', send(name, 'beta', raw_json('beta', path, text), 'POST'), 404)
    for name, text, user in [
            ('spaced body', '{ "query" : "q" ,\n "inputs" : { "user" : "x" } ,\t"user" : "%s" }' % A, 'beta:' + A),
            ('escaped user name', '{"query":"q","inputs":{},"us\\u0065r":"%s"}' % A, 'beta:' + A),
            ('escaped user value', '{"query":"q","inputs":{},"user":"\\u0061lpha:\\"x\\u00e9"}', 'beta:alpha:"x\u00e9'),
            ('user repeated, the last taken', '{"user":"x","query":"q","inputs":{},"user":"%s"}' % A, 'beta:' + A),
            ('numeric user', '{"query":"q","inputs":{},"user":1.5e1}', 'beta:1.5E1'),
            ('no user', '{"query":"q","inputs":{}}', 'beta:default')]:
        r = send(name, 'beta', raw_json('beta', '/v1/chat-messages', text), 'POST')
        c.check(f'{name}: Werkzeug reads {user!r}', r.forwarded and r.seen['user'] == user, f'{r.status} {r.seen}')
    for name, body in [('byte-order mark', b'\xef\xbb\xbf{"query":"q","inputs":{},"user":"x"}'),
                       ('NaN', b'{"query":"q","inputs":{},"user":"x","n":NaN}'),
                       ('lone surrogate', b'{"query":"q","inputs":{},"user":"x\\ud800"}'),
                       ('numeric conversation id', b'{"query":"q","inputs":{},"conversation_id":12345678123412341234123456789012}'),
                       ('numeric file id', b'{"query":"q","inputs":{},"files":[{"transfer_method":"local_file","upload_file_id":7}]}')]:
        c.refused(f'JSON body with a {name}', send(name, 'beta', request('beta', 'POST', '/v1/chat-messages',
                                                                          ['Content-Type: application/json'], body), 'POST'), 400)
    r = send('alpha: own message', 'alpha', json_request('alpha', 'POST', '/v1/text-to-audio', {'message_id': alpha_message}), 'POST')
    c.check('alpha: own message forwarded', r.forwarded and r.seen['user'] == 'alpha:default', f'{r.status}')

    # App-wide routes: refused on a shared app, scoped where Dify filters by end user,
    # served to the app's administrator and to the only tenant of an app.
    for method, path in [('GET', '/v1/app/feedbacks'), ('GET', f'/v1/end-users/{uuid.uuid4()}'),
                         ('GET', '/v1/apps/annotations'), ('POST', '/v1/apps/annotations'),
                         ('DELETE', f'/v1/apps/annotations/{uuid.uuid4()}'), ('POST', '/v1/apps/annotation-reply/enable')]:
        c.refused(f'beta app-wide {method} {path}', send('app-wide', 'beta', json_request('beta', method, path, {})), 403)
        r = send('ops app-wide', 'ops', json_request('ops', method, path, {}), method)
        c.check(f'ops administers {method} {path}', r.forwarded and r.status == 200, f'{r.status} {r.body[:200]!r}')
    r = send('solo app-wide', 'alpha', request('alpha', 'GET', '/apps/solo/v1/app/feedbacks'))
    c.check('the only tenant of an app administers it', r.forwarded and r.status == 200, f'{r.status}')
    r = send('logs scoped', 'beta', request('beta', 'GET', '/v1/workflows/logs?created_by_account=x&page=1'))
    c.check('workflow logs scoped to beta', r.forwarded and r.seen['end_user_filter'] == ['beta:default'] and
            r.seen['created_by_account'] == [], f'{r.status} {r.seen}')
    r = send('logs scoped 2', 'beta', request('beta', 'GET', f'/v1/workflows/logs?created_by_end_user_session_id={A}'))
    c.check('workflow logs filter namespaced', r.forwarded and r.seen['end_user_filter'] == ['beta:' + A], f'{r.seen}')
    r = send('logs admin', 'ops', request('ops', 'GET', '/v1/workflows/logs'))
    c.check('workflow logs unscoped for the administrator', r.forwarded and r.seen['end_user_filter'] == [], f'{r.seen}')

    # Early answers never leave a body to be read as the next request (smuggling).
    smuggled = json_request('beta', 'POST', '/v1/chat-messages', {'query': 'injected', 'inputs': {}, 'user': 'x'})
    probe = request('beta', 'GET', '/v1/parameters')
    for name, first in [
        ('ownership 404', request('beta', 'GET', f'/v1/workflows/run/{alpha_run}', [], smuggled)),
        ('connect 502', request('beta', 'GET', '/apps/dead/v1/info', [], smuggled)),
        ('app-wide 403', request('beta', 'POST', '/v1/apps/annotations', [], smuggled)),
        ('large body 404', request('beta', 'GET', f'/v1/workflows/run/{alpha_run}', [], smuggled + b' ' * 70000)),
    ]:
        r1, r2 = exchange(port, first, 'GET', then=probe)
        c.check(f'smuggling after {name}: answered early', not r1.forwarded and r1.status in (403, 404, 502), f'{r1.status}')
        c.check(f'smuggling after {name}: next answer is the probe\'s',
                r2 is None or (r2.forwarded and r2.seen['route'] == 'GET /parameters'),
                f'{r2 and r2.status} {r2 and r2.seen}')

    # The fuzzer's seed corpus through the same invariants.
    for path in sorted(glob.glob(os.path.join(CORPUS, '*'))):
        with open(path, 'rb') as f:
            raw = f.read()
        try:
            r = exchange(port, raw, raw.split(b' ', 1)[0].decode('latin-1'))
        except (OSError, http.client.HTTPException) as e:
            c.check(f'corpus {os.path.basename(path)}', True)  # closed without an answer: nothing forwarded
            continue
        c.invariants(f'corpus {os.path.basename(path)}', 'beta', r)
        c.check(f'corpus {os.path.basename(path)}: answered', r.status > 0)

    # Every forwarded request: the route Werkzeug matched is the one the gateway classified.
    endpoints = stack.endpoints(set(c.classified))
    for rid, (name, route) in c.classified.items():
        c.check(f'{name}: classified as Werkzeug routed it', endpoints.get(rid) == route,
                f'gateway {endpoints.get(rid)!r}, Werkzeug {route!r}')
    return c


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--gateway', required=True)
    args = parser.parse_args()
    with Stack(args.gateway) as stack:
        c = run(stack.port, stack)
    print(f'{c.passed} passed, {len(c.failed)} failed')
    sys.exit(1 if c.failed else 0)


if __name__ == '__main__':
    main()
