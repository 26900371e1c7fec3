// The simulator's pure parts (flags, config patches, Ollama's keep_alive and Host rules,
// model-name matching) and in-process use through startSim().

import t from 'tap';
import { startSim } from '../../src/sim/index.js';
import { HostGuard, HostVerdict } from '../../src/host-guard.js';
import { ModelSet } from '../../src/sim/models.js';
import { keepAliveMs } from '../../src/sim/ollama.js';
import { applyTunablesPatch, parseSimArgs, SIM_DEFAULTS, SimOptionError, tunablesJson } from '../../src/sim/options.js';

t.test('parseSimArgs', async (t) => {
  const o = parseSimArgs(['--port', '0', '--protocol=mlflow', '--models', 'a, b:1', '--ttft-ms', '7', '--hang', '--error-rate', '0.25']);
  t.not(o, 'help');
  if (o === 'help') return;
  t.equal(o.port, 0);
  t.equal(o.protocol, 'mlflow');
  t.same(o.models, ['a', 'b:1']);
  t.equal(o.ttftMs, 7);
  t.equal(o.hang, true);
  t.equal(o.errorRate, 0.25);
  t.equal(o.tokens, SIM_DEFAULTS.tokens, 'unset flags keep their defaults');
  t.ok(Object.isFrozen(o));
  t.equal(parseSimArgs(['--help']), 'help');
  t.equal((parseSimArgs(['--hang', '--port', '1']) as { hang: boolean }).hang, true, 'a bare boolean flag does not eat the next flag');
  t.equal((parseSimArgs(['--port', '1', '--hang=false']) as { hang: boolean }).hang, false);

  const bad: [string[], RegExp][] = [
    [[], /--port is required/],
    [['--port', '70000'], /--port must be/],
    [['--port'], /--port needs a value/],
    [['--port', '0', '--tokens', '-1'], /--tokens must be an integer/],
    [['--port', '0', '--status', '200'], /--status must be 0/],
    [['--port', '0', '--models', 'bad name'], /invalid model name/],
    [['--port', '0', 'extra'], /unexpected argument 'extra'/],
  ];
  for (const [args, msg] of bad) t.throws(() => parseSimArgs(args), msg, args.join(' '));
});

t.test('applyTunablesPatch', async (t) => {
  const next = applyTunablesPatch(SIM_DEFAULTS, { ttft_ms: 0, status: 503, hang: true });
  t.match(tunablesJson(next), { ttft_ms: 0, status: 503, hang: true, tokens: 20 });
  t.ok(Object.isFrozen(next));
  t.throws(() => applyTunablesPatch(SIM_DEFAULTS, { nope: 1 }), SimOptionError);
  t.throws(() => applyTunablesPatch(SIM_DEFAULTS, { ttft_ms: 1.5 }), /ttft_ms must be an integer/);
  t.throws(() => applyTunablesPatch(SIM_DEFAULTS, { hang: 'yes' }), /hang must be true or false/);
  t.throws(() => applyTunablesPatch(SIM_DEFAULTS, [1]), /JSON object/);
});

t.test('keep_alive as Ollama parses it', async (t) => {
  t.equal(keepAliveMs(undefined), undefined);
  t.equal(keepAliveMs(30), 30_000);
  t.equal(keepAliveMs('10m'), 600_000);
  t.equal(keepAliveMs('1h2m3.5s'), 3_723_500);
  t.equal(keepAliveMs(0), 0);
  t.equal(keepAliveMs('0'), 0);
  t.ok((keepAliveMs(-1) as number) > 1e12, 'negative means forever');
  t.same(keepAliveMs('300'), { error: 'time: missing unit in duration "300"' });
  t.same(keepAliveMs('1d'), { error: 'time: unknown unit "d" in duration "1d"' });
  t.same(keepAliveMs('abc'), { error: 'time: invalid duration "abc"' });
  t.same(keepAliveMs(true), { error: "Unsupported type: 'bool'" });
});

t.test('Host guard verdicts', async (t) => {
  const g = new HostGuard();
  t.equal(g.check(undefined), HostVerdict.AllowedByName);
  t.equal(g.check('localhost:11434'), HostVerdict.AllowedByName);
  t.equal(g.check('LOCALHOST'), HostVerdict.AllowedByName);
  t.equal(g.check('api.internal:80'), HostVerdict.AllowedByName);
  t.equal(g.check('127.0.0.1:11434'), HostVerdict.AllowedByIp);
  t.equal(g.check('192.168.1.10'), HostVerdict.AllowedByIp);
  t.equal(g.check('172.20.0.1:80'), HostVerdict.AllowedByIp);
  t.equal(g.check('[::1]:11434'), HostVerdict.AllowedByIp);
  t.equal(g.check('0.0.0.0'), HostVerdict.AllowedByIp);
  t.equal(g.check('8.8.8.8'), HostVerdict.Forbidden);
  t.equal(g.check('172.32.0.1'), HostVerdict.Forbidden);
  t.equal(g.check('example.com'), HostVerdict.Forbidden);
  t.equal(g.check('localhost.evil.com'), HostVerdict.Forbidden);
});

t.test('model names match the way Ollama matches them', async (t) => {
  const m = new ModelSet(['demo', 'llama3.2:1b', 'hf.co/org/x:q4'], new Date(0));
  t.same(m.list.map((x) => x.name), ['demo:latest', 'llama3.2:1b', 'hf.co/org/x:q4']);
  for (const n of ['demo', 'demo:latest', 'DEMO', 'library/demo', 'registry.ollama.ai/library/demo:latest']) {
    t.equal(m.resolve(n)?.name, 'demo:latest', n);
  }
  t.equal(m.resolve('llama3.2'), undefined, 'a different tag is a different model');
  t.equal(m.resolve('llama3.2:1b')?.name, 'llama3.2:1b');
  t.equal(m.resolve('hf.co/org/x:q4')?.name, 'hf.co/org/x:q4');
  t.equal(m.resolve(''), undefined);
  t.equal(m.resolve(42), undefined);
});

t.test('startSim in process', async (t) => {
  const sim = await startSim({ ttftMs: 0, tokenMs: 0, tokens: 4 });
  t.teardown(() => sim.close());
  const r = await fetch(`http://127.0.0.1:${sim.port}/api/generate`, {
    method: 'POST',
    body: JSON.stringify({ model: 'demo', prompt: 'hi', stream: false }),
  });
  t.equal(((await r.json()) as { eval_count: number }).eval_count, 4);
  t.equal(sim.configure({ tokens: 1 }).tokens, 1);
  const r2 = await fetch(`http://127.0.0.1:${sim.port}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'demo', prompt: 'hi' }),
  });
  t.match(await r2.json(), { choices: [{ text: 'tok0 ' }] });
  t.match(sim.stats(), { requests: 2, completed: 2, cancelled: 0 });
  t.throws(() => sim.configure({ errorRate: 3 }), SimOptionError);
  await t.rejects(startSim({ port: -1 }), SimOptionError);
});
