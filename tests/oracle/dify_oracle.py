"""A stand-in for Dify's API process that reads requests exactly as Dify's stack does:
Flask/Werkzeug (Debian's python3-flask) under gunicorn, with Dify's Service API routes
registered as Werkzeug rules. It answers every request with what it read: the route it
matched, every place a `user` value could be read from (JSON body, query, form), and the
ids the request names. The differential tests compare that with what the gateway decided.

Run: gunicorn -b 127.0.0.1:0 --chdir tests/oracle dify_oracle:app
"""
import base64
import json
import uuid

from flask import Flask, Response, request

app = Flask(__name__)

# method, Werkzeug rule (below /v1), where Dify reads `user`. Mirrors Dify 1.13's
# controllers/service_api (plus the newer docs' routes); the gateway's table is checked
# against this one by the tests, so the two cannot drift apart silently.
ROUTES = [
    ('GET', '/', 'none'),
    ('POST', '/chat-messages', 'json'),
    ('POST', '/chat-messages/<string:task_id>/stop', 'json'),
    ('POST', '/completion-messages', 'json'),
    ('POST', '/completion-messages/<string:task_id>/stop', 'json'),
    ('POST', '/workflows/run', 'json'),
    ('POST', '/workflows/<string:workflow_id>/run', 'json'),
    ('POST', '/workflows/tasks/<string:task_id>/stop', 'json'),
    ('GET', '/workflows/run/<string:workflow_run_id>', 'none'),
    ('GET', '/workflows/logs', 'none'),
    ('GET', '/workflow/<string:workflow_run_id>/events', 'query'),
    ('GET', '/form/human_input/<string:form_token>', 'none'),
    ('POST', '/form/human_input/<string:form_token>', 'json'),
    ('GET', '/messages', 'query'),
    ('POST', '/messages/<uuid:message_id>/feedbacks', 'json'),
    ('GET', '/messages/<uuid:message_id>/suggested', 'query'),
    ('GET', '/conversations', 'query'),
    ('DELETE', '/conversations/<uuid:c_id>', 'json'),
    ('POST', '/conversations/<uuid:c_id>/name', 'json'),
    ('GET', '/conversations/<uuid:c_id>/variables', 'query'),
    ('PUT', '/conversations/<uuid:c_id>/variables/<uuid:variable_id>', 'json'),
    ('POST', '/text-to-audio', 'json'),
    ('POST', '/audio-to-text', 'form'),
    ('POST', '/files/upload', 'form'),
    ('GET', '/files/<uuid:file_id>/preview', 'query'),
    ('GET', '/parameters', 'none'),
    ('GET', '/meta', 'none'),
    ('GET', '/info', 'none'),
    ('GET', '/site', 'none'),
    ('GET', '/app/feedbacks', 'none'),
    ('GET', '/end-users/<uuid:end_user_id>', 'none'),
    ('GET', '/apps/annotations', 'none'),
    ('POST', '/apps/annotations', 'none'),
    ('PUT', '/apps/annotations/<uuid:annotation_id>', 'none'),
    ('DELETE', '/apps/annotations/<uuid:annotation_id>', 'none'),
    ('POST', '/apps/annotation-reply/<string:action>', 'none'),
    ('GET', '/apps/annotation-reply/<string:action>/status/<uuid:job_id>', 'none'),
]


def gateway_pattern(rule):
    """'/conversations/<uuid:c_id>/name' -> '/conversations/{}/name' (the gateway's form)."""
    out = []
    for part in rule.split('/'):
        out.append('{}' if part.startswith('<') else part)
    return '/'.join(out) or '/'


def collect_ids(value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            if k == 'upload_file_id' and isinstance(v, str):
                out.append(v)
            else:
                collect_ids(v, out)
    elif isinstance(value, list):
        for v in value:
            collect_ids(v, out)


def answer(method, rule, place, **params):
    seen = {'route': f'{method} {gateway_pattern(rule)}', 'place': place, 'path': request.path,
            'params': {k: str(v) for k, v in params.items()}, 'users': [], 'ids': []}
    # Where Dify reads `user` for this route, exactly as its decorator does ...
    if place == 'json':
        body = request.get_json()  # 415 / 400 exactly as Flask answers them
        if isinstance(body, dict) and 'user' in body:
            seen['user'] = body['user']
        if isinstance(body, dict):
            for key in ('conversation_id', 'message_id'):
                if isinstance(body.get(key), str):
                    seen['ids'].append(body[key])
            collect_ids(body, seen['ids'])
    elif place == 'query':
        seen['user'] = request.args.get('user')
    elif place == 'form':
        seen['user'] = request.form.get('user')
    # ... and every value a handler of this route could read: the query's on any route (a
    # cheap place for a future handler to look), and the body's where the route reads one.
    seen['users'] += request.args.getlist('user')
    if place == 'form':
        seen['users'] += request.form.getlist('user')
    if place == 'json':
        body = request.get_json(silent=True)
        if isinstance(body, dict) and 'user' in body:
            seen['users'].append(body['user'])
    if request.path.endswith('/messages') or request.path == '/v1/messages':
        seen['ids'] += request.args.getlist('conversation_id')
    seen['ids'] += [str(v) for v in params.values()]
    seen['end_user_filter'] = request.args.getlist('created_by_end_user_session_id')
    seen['created_by_account'] = request.args.getlist('created_by_account')
    if rule in ('/chat-messages', '/completion-messages', '/workflows/run'):
        # What a blocking generate reply names: the gateway records these as the tenant's.
        seen.update({'id': str(uuid.uuid4()), 'message_id': str(uuid.uuid4()), 'task_id': str(uuid.uuid4()),
                     'conversation_id': str(uuid.uuid4()), 'workflow_run_id': str(uuid.uuid4()),
                     'metadata': {'usage': {'total_tokens': 3}}})
    text = json.dumps(seen)
    # Also in a header: HEAD answers carry no body. The re-attach route streams, as Dify's does.
    headers = {'X-Oracle': '1', 'X-Oracle-Seen': base64.b64encode(text.encode()).decode()}
    if rule == '/workflow/<string:workflow_run_id>/events':
        return Response(iter([f'data: {text}\n\n']), mimetype='text/event-stream', headers=headers)
    return Response(text, mimetype='application/json', headers=headers)


def register(method, rule, place):
    def view(**params):
        return answer(method, rule, place, **params)
    view.__name__ = f'{method}_{rule}'
    app.add_url_rule('/v1' + rule, view_func=view, methods=[method])


for _method, _rule, _place in ROUTES:
    register(_method, _rule, _place)


@app.errorhandler(404)
def not_found(e):
    return Response(json.dumps({'oracle': 'not_found', 'path': request.path}), status=404,
                    mimetype='application/json', headers={'X-Oracle': '1'})
