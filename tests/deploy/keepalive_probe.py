"""Refused requests on one keep-alive connection through a proxy, the way SDKs send them:
the head first, the body a moment later (as over a real network). Shared by the nginx
end-to-end test and the Docker stack test."""
import collections
import http.client
import json
import time


def refusals_on_one_connection(base_url, keys, count):
    """POSTs `count` chat requests on one connection, cycling through `keys` (all refused);
    returns (statuses, reconnects, answers that said Connection: close)."""
    host, port = base_url[len('http://'):].split(':')
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({'inputs': {}, 'query': 'x' * 2000, 'response_mode': 'blocking', 'user': 'u'}).encode()
    statuses, reconnects, closing = collections.Counter(), 0, 0
    try:
        for i in range(count):
            conn.putrequest('POST', '/v1/chat-messages')
            for name, value in (('Authorization', f'Bearer {keys[i % len(keys)]}'), ('Content-Type', 'application/json'),
                                ('Content-Length', str(len(body)))):
                conn.putheader(name, value)
            conn.endheaders()
            sock = conn.sock
            time.sleep(0.002)  # the body comes a moment after the head
            conn.send(body)
            r = conn.getresponse()
            r.read()
            statuses[r.status] += 1
            closing += r.getheader('Connection', '').lower() == 'close'
            reconnects += conn.sock is not sock
    finally:
        conn.close()
    return statuses, reconnects, closing
