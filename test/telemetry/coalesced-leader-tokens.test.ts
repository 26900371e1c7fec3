// Identical requests in flight share one upstream call, whose tokens the leader's request
// counts (a joiner counts none). When the leader's client leaves, the call goes on for the
// joiners, and its tokens must still be counted once: sluice_tokens_total, the token cost,
// the GenAI usage histogram. Through the real gateway: a leader that leaves before the
// simulator's first byte, a joiner that reads the whole answer, each compared with the same
// request made alone; a JSON answer (its usage) and an SSE stream (one token per event).

import { request } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { eventually, jsonLogs, metricsText, sample, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27730-27739 belong to this file: the model servers.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 27730, to: 27739 },
    deployments: [{
      model: 'demo', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '400', '--token-ms', '1', '--tokens', '5'],
      cost: { per_1k_output_tokens: 1000 },
    }],
  });
});

t.teardown(async () => {
  await gw?.stop();
});

const DEMO = { deployment: 'demo-1' };

async function counts(): Promise<{ output: number; cost: number; answers: number; coalesced: number; left: number }> {
  const text = await metricsText(gw);
  return {
    output: sample(text, 'sluice_tokens_total', { ...DEMO, direction: 'output' }) ?? 0,
    cost: sample(text, 'sluice_cost_usd_total', { ...DEMO, kind: 'output_tokens' }) ?? 0,
    answers: sample(text, 'gen_ai_client_token_usage_count', { ...DEMO, gen_ai_token_type: 'output' }) ?? 0,
    coalesced: sample(text, 'sluice_coalesced_total', DEMO) ?? 0,
    left: sample(text, 'sluice_requests_total', { ...DEMO, code: '499' }) ?? 0,
  };
}

function chat(content: string, stream: boolean): string {
  return JSON.stringify({ model: 'demo', temperature: 0, stream, messages: [{ role: 'user', content }] });
}

/** Sends `body` and goes away after `ms`, before the simulator's first byte. */
function leaveAfter(body: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const req = request(`${gw.url}/demo-1/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    req.on('error', () => resolve());
    req.on('close', () => resolve());
    req.end(body);
    setTimeout(() => req.destroy(), ms);
  });
}

function whole(body: string): ReturnType<typeof httpRequest> {
  return httpRequest(`${gw.url}/demo-1/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
}

for (const stream of [false, true]) {
  t.test(`a ${stream ? 'streamed' : 'JSON'} answer whose leader left counts its tokens once`, async (t) => {
    const before = await counts();
    t.equal((await whole(chat(`alone ${stream}`, stream))).status, 200);
    // The accounting of the exchange that ended, read after its line is written.
    await sleep(100);
    const alone = await counts();
    const tokens = alone.output - before.output;
    t.ok(tokens > 0, `a lone request counts ${tokens} output tokens`);

    const body = chat(`shared ${stream}`, stream);
    const left = leaveAfter(body, 150);
    await sleep(30);
    const joiner = await whole(body);
    t.equal(joiner.status, 200);
    t.ok(joiner.complete, 'the joiner got the whole answer');
    t.equal(joiner.headers['x-sluice-cache'], 'coalesced', 'the joiner is told its answer was shared');
    const line = await eventually(() => jsonLogs(gw).find((l) => l.msg === 'request' && l.request_id === joiner.headers['x-request-id']), 5_000, 'the joiner\'s access line');
    t.equal(line.cache, 'coalesced', 'and its access line says so');
    await left;
    await sleep(100);
    const after = await counts();
    t.equal(after.coalesced - alone.coalesced, 1, 'the two shared one upstream call');
    t.equal(after.left - alone.left, 1, 'the leader\'s client left: its request is a 499');
    t.equal(after.output - alone.output, tokens, 'its tokens, once');
    t.equal(after.answers - alone.answers, 1, 'one answer in the GenAI token usage');
    t.ok(Math.abs(after.cost - alone.cost - (alone.cost - before.cost)) < 1e-9, 'charged as the lone request');
  });
}
