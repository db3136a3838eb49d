#!/usr/bin/env python3
"""Every flow of the Dify integration guide, run as a client developer writes it.

The client code below is the guide's code: only BASE_URL and API_KEY differ between
Dify and what we point it at. The target is started here (tests/seed/stack.py):
  --emulator BIN                 dify-emulator over HTTPS (throwaway CA), called directly;
  --emulator BIN --gateway BIN   the same flows through dify-gateway in front of it.
TLS is verified through REQUESTS_CA_BUNDLE, so the client code needs no change.
Runs with Debian's python3 and python3-requests; exits non-zero on any failure.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import unittest

from stack import APPS, Stack

import requests

# ---- What a client developer configures: the only two lines that change. ----
API_KEY = None
BASE_URL = None

# Per target, what those two lines are set to for the chat app and the workflow app.
CHAT = WORKFLOW = None     # (base_url, key)
CONTROL_URL = None         # the emulator's /_emulator routes (fault programming)
DIRECT_TO_DIFY = True      # False when the target is the gateway in front of the emulator


# ---- The guide's client code, unchanged but for the globals above. ----
def chat(message: str, conversation_id: str = '') -> dict:
    resp = requests.post(
        f'{BASE_URL}/chat-messages',
        headers={'Authorization': f'Bearer {API_KEY}'},
        json={
            'inputs': {},
            'query': message,
            'response_mode': 'blocking',
            'conversation_id': conversation_id,
            'user': 'user-123',
        }
    )
    resp.raise_for_status()
    data = resp.json()
    return {
        'answer': data['answer'],
        'conversation_id': data['conversation_id'],
    }


def chat_stream(message: str, conversation_id: str = ''):
    """Yields text chunks as they arrive."""
    resp = requests.post(
        f'{BASE_URL}/chat-messages',
        headers={'Authorization': f'Bearer {API_KEY}'},
        json={
            'inputs': {},
            'query': message,
            'response_mode': 'streaming',
            'conversation_id': conversation_id,
            'user': 'user-123',
        },
        stream=True
    )
    resp.raise_for_status()
    for line in resp.iter_lines():
        if line and line.startswith(b'data: '):
            payload = json.loads(line[6:])
            event = payload.get('event')
            if event == 'message':
                yield payload.get('answer', '')
            elif event == 'message_end':
                return


def run_workflow(inputs: dict) -> dict:
    resp = requests.post(
        f'{BASE_URL}/workflows/run',
        headers={'Authorization': f'Bearer {API_KEY}'},
        json={
            'inputs': inputs,
            'response_mode': 'blocking',
            'user': 'user-123',
        }
    )
    resp.raise_for_status()
    return resp.json()['data']['outputs']


class DifyChat:
    def __init__(self, user_id: str):
        self.user_id = user_id
        self.conversation_id = ''

    def send(self, message: str) -> str:
        result = chat(message, self.conversation_id)
        self.conversation_id = result['conversation_id']  # persist
        return result['answer']


def chat_with_retry(message: str, conversation_id: str = '', max_retries: int = 3) -> dict:
    for attempt in range(max_retries):
        try:
            return chat(message, conversation_id)
        except requests.HTTPError as e:
            if e.response.status_code == 429:
                wait = 2 ** attempt
                print(f'Rate limited, waiting {wait}s...')
                time.sleep(wait)
            elif e.response.status_code >= 500:
                time.sleep(1)
            else:
                raise  # 400/401/404 are not retryable
    raise RuntimeError('Max retries exceeded')


def upload_file(path: str) -> str:
    with open(path, 'rb') as f:
        resp = requests.post(
            f'{BASE_URL}/files/upload',
            headers={'Authorization': f'Bearer {API_KEY}'},
            files={'file': f},
            data={'user': 'user-123'}
        )
    resp.raise_for_status()
    return resp.json()['id']


# ---- The tests. ----
def program_fault(fault: str, count: int, path: str = '/v1/chat-messages'):
    r = requests.post(f'{CONTROL_URL}/_emulator/faults', json={'fault': fault, 'count': count, 'path': path})
    r.raise_for_status()


def use(target):
    global BASE_URL, API_KEY
    BASE_URL, API_KEY = target


class SeedFlows(unittest.TestCase):
    def setUp(self):
        use(CHAT)

    def test_blocking_chat_and_continued_conversation(self):
        result = chat('What is the refund policy?')
        self.assertIn('What is the refund policy?', result['answer'])
        result2 = chat('What about international orders?', result['conversation_id'])
        self.assertEqual(result2['conversation_id'], result['conversation_id'])
        self.assertIn('Turn 2', result2['answer'])
        self.assertIn('What is the refund policy?', result2['answer'])  # context preserved

    def test_streaming_chat(self):
        chunks = list(chat_stream('Explain quantum entanglement simply.'))
        self.assertGreater(len(chunks), 1)
        self.assertEqual(''.join(chunks), 'Turn 1. You said: "Explain quantum entanglement simply.".')

    def test_workflow_run(self):
        use(WORKFLOW)
        result = run_workflow({'document_url': 'https://example.com/contract.pdf'})
        self.assertIn('document_url=https://example.com/contract.pdf', result['summary'])

    def test_conversation_persistence_class(self):
        session = DifyChat('user-456')
        first = session.send('Hi, I need help with my order')
        second = session.send('Order number is 12345')
        self.assertIn('Turn 1', first)
        self.assertIn('Turn 2', second)
        self.assertIn('Hi, I need help with my order', second)

    def test_upload_file_then_chat_with_it(self):
        with tempfile.NamedTemporaryFile(suffix='.pdf', delete=False) as tmp:
            tmp.write(b'%PDF-1.4 a contract')
            path = tmp.name
        try:
            if DIRECT_TO_DIFY:
                # Dify quirk: requests sends the file part without a
                # Content-Type, and Dify answers 415 unsupported_file_type. Straight to
                # Dify the guide's upload_file() fails; the gateway repairs the part.
                with self.assertRaises(requests.HTTPError) as ctx:
                    upload_file(path)
                self.assertEqual(ctx.exception.response.status_code, 415)
                self.assertEqual(ctx.exception.response.json()['code'], 'unsupported_file_type')
                with open(path, 'rb') as f:
                    resp = requests.post(f'{BASE_URL}/files/upload', headers={'Authorization': f'Bearer {API_KEY}'},
                                         files={'file': (os.path.basename(path), f, 'application/pdf')},
                                         data={'user': 'user-123'})
                resp.raise_for_status()
                file_id = resp.json()['id']
            else:
                file_id = upload_file(path)
        finally:
            os.unlink(path)
        chat_with_file = {
            'inputs': {},
            'query': 'Summarise this contract',
            'files': [{'type': 'document', 'transfer_method': 'local_file', 'upload_file_id': file_id}],
            'response_mode': 'blocking',
            'user': 'user-123',
        }
        resp = requests.post(f'{BASE_URL}/chat-messages', headers={'Authorization': f'Bearer {API_KEY}'},
                             json=chat_with_file)
        resp.raise_for_status()
        self.assertIn(os.path.basename(path), resp.json()['answer'])

    def test_retry_loop_on_429_and_500(self):
        # Through the gateway, each client call is up to 3 attempts at Dify (retry.max_attempts):
        # transient 429s are absorbed, and the guide's own loop handles what gets through.
        per_call = 1 if DIRECT_TO_DIFY else 3
        waits = []
        real_sleep = time.sleep
        time.sleep = waits.append  # record the guide's back-off instead of sleeping
        try:
            program_fault('status=429', 2)
            result = chat_with_retry('Are you there?')
            self.assertIn('Are you there?', result['answer'])
            self.assertEqual(waits, [1, 2] if DIRECT_TO_DIFY else [])
            waits.clear()
            program_fault('status=500', 1)  # a generation: never retried by the gateway
            chat_with_retry('And now?')
            self.assertEqual(waits, [1])
            program_fault('status=429', 3 * per_call)
            with self.assertRaises(RuntimeError):
                chat_with_retry('Give up')
        finally:
            time.sleep = real_sleep
            # The gateway's retry budget may have spared some of the programmed faults.
            requests.delete(f'{CONTROL_URL}/_emulator/faults').raise_for_status()

    def test_bad_key_is_not_retried(self):
        use((CHAT[0], 'app-000000000000000000000000'))
        with self.assertRaises(requests.HTTPError) as ctx:
            chat_with_retry('hello')
        self.assertEqual(ctx.exception.response.status_code, 401)


def main():
    global CHAT, WORKFLOW, CONTROL_URL, DIRECT_TO_DIFY
    parser = argparse.ArgumentParser()
    parser.add_argument('--emulator', required=True, help='path to the dify-emulator binary')
    parser.add_argument('--gateway', help='path to the dify-gateway binary: run the flows through it')
    args, rest = parser.parse_known_args()
    with Stack(args.emulator, args.gateway) as s:
        os.environ.update(s.env())
        CONTROL_URL = s.emulator_url
        if args.gateway:
            DIRECT_TO_DIFY = False
            CHAT = (f'{s.gateway_url}/v1', s.tenant_key)
            WORKFLOW = (f'{s.gateway_url}/apps/workflow/v1', s.tenant_key)
        else:
            CHAT = (f'{s.emulator_url}/v1', APPS['chat'])
            WORKFLOW = (f'{s.emulator_url}/v1', APPS['workflow'])
        result = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == '__main__':
    main()
