// The official Dify Node SDK (dify-client from npm), unchanged, talking to dify-gateway:
// only the base URL and the key differ from talking to Dify. Run by tests/seed/stack.py,
// which starts dify-emulator + dify-gateway and sets DIFY_GATEWAY_URL / DIFY_GATEWAY_KEY.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChatClient, CompletionClient, DifyClient } from 'dify-client';

const gateway = process.env.DIFY_GATEWAY_URL;
const key = process.env.DIFY_GATEWAY_KEY;
assert.ok(gateway && key, 'run me through tests/seed/stack.py --gateway');

const chat = new ChatClient(key, `${gateway}/v1`);
const user = 'node-user';

// Reads an SSE response stream to its end; returns the parsed data events.
async function readEvents(stream) {
  let text = '';
  for await (const piece of stream) text += piece.toString('utf8');
  return text.split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => JSON.parse(f.slice(6)));
}

test('blocking chat and a continued conversation', async () => {
  const first = await chat.createChatMessage({}, 'What is the refund policy?', user, false);
  assert.equal(first.status, 200);
  assert.equal(first.data.answer, 'Turn 1. You said: "What is the refund policy?".');
  const second = await chat.createChatMessage({}, 'And abroad?', user, false, first.data.conversation_id);
  assert.equal(second.data.conversation_id, first.data.conversation_id);
  assert.match(second.data.answer, /^Turn 2\./);
});

test('streaming chat', async () => {
  const res = await chat.createChatMessage({}, 'Explain SSE briefly', user, true);
  assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
  const events = await readEvents(res.data);
  const answer = events.filter((e) => e.event === 'message').map((e) => e.answer).join('');
  assert.equal(answer, 'Turn 1. You said: "Explain SSE briefly".');
  assert.equal(events.at(-1).event, 'message_end');
});

test('conversations: list, messages, rename, delete', async () => {
  const started = await chat.createChatMessage({}, 'keep this', 'node-conv-user', false);
  const id = started.data.conversation_id;
  const list = await chat.getConversations('node-conv-user');
  assert.deepEqual(list.data.data.map((c) => c.id), [id]);
  const messages = await chat.getConversationMessages('node-conv-user', id);
  assert.equal(messages.data.data[0].query, 'keep this');
  const renamed = await chat.renameConversation(id, 'Kept', 'node-conv-user', false);
  assert.equal(renamed.data.name, 'Kept');
  const deleted = await chat.deleteConversation(id, 'node-conv-user');
  assert.equal(deleted.status, 204);
  const after = await chat.getConversations('node-conv-user');
  assert.equal(after.data.data.length, 0);
});

test('workflow run through the app path', async () => {
  const wf = new CompletionClient(key, `${gateway}/apps/workflow/v1`);
  const res = await wf.runWorkflow({ topic: 'heat pumps' }, user, false);
  assert.equal(res.data.data.status, 'succeeded');
  assert.equal(res.data.data.outputs.summary, 'Workflow summary of topic=heat pumps.');
});

test('file upload, then chat with the file', async () => {
  const client = new DifyClient(key, `${gateway}/v1`);
  const form = new FormData();
  form.append('file', new Blob(['%PDF-1.4 node'], { type: 'application/pdf' }), 'node.pdf');
  form.append('user', user);
  const uploaded = await client.fileUpload(form);
  assert.equal(uploaded.status, 201);
  assert.equal(uploaded.data.name, 'node.pdf');
  const files = [{ type: 'document', transfer_method: 'local_file', upload_file_id: uploaded.data.id }];
  const res = await chat.createChatMessage({}, 'Summarise', user, false, null, files);
  assert.match(res.data.answer, /Files: node\.pdf \(13 bytes\)\./);
});

test('application parameters and feedback', async () => {
  const params = await chat.getApplicationParameters(user);
  assert.ok(Array.isArray(params.data.user_input_form));
  const msg = await chat.createChatMessage({}, 'rate me', user, false);
  const fb = await chat.messageFeedback(msg.data.id, 'like', user);
  assert.deepEqual(fb.data, { result: 'success' });
});

test('a wrong key is rejected by the gateway in Dify\'s shape', async () => {
  const bad = new ChatClient('not-a-valid-tenant-key', `${gateway}/v1`);
  await assert.rejects(bad.createChatMessage({}, 'hi', user, false), (err) => {
    assert.equal(err.response.status, 401);
    assert.equal(err.response.data.code, 'unauthorized');
    return true;
  });
});
