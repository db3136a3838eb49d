// The official OpenAI Node SDK (openai from npm), unchanged, talking to dify-gateway's
// OpenAI-compatible front: only the base URL and the key are the gateway's. Run by
// tests/seed/stack.py, which starts dify-emulator + dify-gateway and sets
// DIFY_GATEWAY_URL, DIFY_GATEWAY_KEY and DIFY_GATEWAY_LIMITED_KEY (a tenant with a rate of
// one request per second).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import OpenAI from 'openai';

const gateway = process.env.DIFY_GATEWAY_URL;
const key = process.env.DIFY_GATEWAY_KEY;
const limitedKey = process.env.DIFY_GATEWAY_LIMITED_KEY;
assert.ok(gateway && key && limitedKey, 'run me through tests/seed/stack.py --gateway');

const client = (apiKey, options = {}) => new OpenAI({ apiKey, baseURL: `${gateway}/openai/v1`, ...options });
const openai = client(key);
const content = (completion) => completion.choices[0].message.content;

test('models are the apps of the key', async () => {
  const ids = [];
  for await (const model of openai.models.list()) ids.push(model.id);
  assert.deepEqual(ids.sort(), ['agent', 'chat', 'chatflow', 'completion', 'workflow']);
});

test('a blocking completion with Dify usage', async () => {
  const completion = await openai.chat.completions.create({
    model: 'chat', user: 'sdk-user', messages: [{ role: 'user', content: 'Hi' }],
  });
  assert.equal(content(completion), 'Turn 1. You said: "Hi".');
  assert.equal(completion.choices[0].finish_reason, 'stop');
  assert.ok(completion.usage.total_tokens > 0);
  assert.equal(completion.usage.total_tokens, completion.usage.prompt_tokens + completion.usage.completion_tokens);
});

test('a stream of chunks with its usage', async () => {
  const stream = await openai.chat.completions.create({
    model: 'chat', user: 'sdk-stream', stream: true, stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'Explain SSE briefly' }],
  });
  let text = '';
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.usage) usage = chunk.usage;
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, 'Turn 1. You said: "Explain SSE briefly".');
  assert.ok(chunks >= 3);
  assert.ok(usage && usage.total_tokens > 0);
});

test('five turns resending the history continue one Dify conversation', async () => {
  const messages = [{ role: 'system', content: 'Be brief.' }];
  for (let turn = 1; turn <= 5; turn += 1) {
    messages.push({ role: 'user', content: `question ${turn}` });
    const answer = content(await openai.chat.completions.create({ model: 'chat', user: 'sdk-five', messages }));
    const earlier = turn > 1 ? ` Earlier you said: "question ${turn - 1}".` : '';
    assert.equal(answer, `Turn ${turn}. You said: "question ${turn}".${earlier}`);
    messages.push({ role: 'assistant', content: answer });
  }
  // The same end user name under another tenant is another end user.
  const other = await client(limitedKey).chat.completions.create({
    model: 'chat', user: 'sdk-five', messages: [{ role: 'user', content: 'question 1' }],
  });
  assert.equal(content(other), 'Turn 1. You said: "question 1".');
  // An edited history starts a new conversation, the earlier turns given as context.
  messages[2] = { role: 'assistant', content: 'an edited answer' };
  messages.push({ role: 'user', content: 'question 6' });
  const edited = content(await openai.chat.completions.create({ model: 'chat', user: 'sdk-five', messages }));
  assert.match(edited, /^Turn 1\. /);
  assert.match(edited, /assistant: an edited answer/);
});

test('a workflow app through the front', async () => {
  const completion = await openai.chat.completions.create({
    model: 'workflow', user: 'sdk-user', messages: [{ role: 'user', content: 'heat pumps' }],
  });
  assert.equal(content(completion), 'Workflow summary of query=heat pumps.');
  assert.ok(completion.usage.total_tokens > 0);
});

test('a 429 is retried after its Retry-After', async () => {
  let calls = 0;
  const counting = client(limitedKey, { fetch: (url, init) => { calls += 1; return fetch(url, init); } });
  const ask = () => counting.chat.completions.create({ model: 'chat', user: 'sdk-429', messages: [{ role: 'user', content: 'x' }] });
  await ask().catch(() => {}); // spends the tenant's one request of this second
  calls = 0;
  const started = Date.now();
  const completion = await ask();
  assert.match(content(completion), /^Turn /);
  assert.ok(calls >= 2, `refused, then retried (${calls} calls)`);
  assert.ok(Date.now() - started >= 900, 'the SDK waited for Retry-After');
});

test('a bad key is OpenAI\'s 401', async () => {
  await assert.rejects(
    client('sk-wrong').chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }),
    (err) => err instanceof OpenAI.AuthenticationError && err.status === 401 && err.code === 'invalid_api_key',
  );
});
