import { createServer, type Server } from 'node:net';
import t from 'tap';
import { PortAllocator } from '../../src/ports/index.js';

// Ports 18100-18139 belong to this file; other test files use other slices.

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

t.test('50 concurrent acquires over 10 ports: 10 distinct ports, 40 NO_FREE_PORT', async (t) => {
  const alloc = new PortAllocator({ from: 18100, to: 18109 });
  const results = await Promise.allSettled(Array.from({ length: 50 }, () => alloc.acquire()));
  const ports = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as { code?: string }] : []));
  t.equal(ports.length, 10);
  t.equal(new Set(ports).size, 10, 'no port handed out twice');
  t.ok(ports.every((p) => p >= 18100 && p <= 18109));
  t.equal(failures.length, 40);
  t.ok(failures.every((e) => e.code === 'SLUICE_ERR_NO_FREE_PORT'));
  t.same(alloc.held(), [...ports].sort((a, b) => a - b));
});

t.test('sequential acquires never repeat a held port; exhaustion holds nothing extra', async (t) => {
  const alloc = new PortAllocator({ from: 18110, to: 18112 });
  const a = await alloc.acquire();
  const b = await alloc.acquire();
  const c = await alloc.acquire();
  t.equal(new Set([a, b, c]).size, 3);
  await t.rejects(alloc.acquire(), { code: 'SLUICE_ERR_NO_FREE_PORT', status: 503 });
  t.same(alloc.held(), [18110, 18111, 18112]);
});

t.test('a port another program listens on is skipped', async (t) => {
  const other = await listen(18115);
  t.teardown(() => close(other));
  const alloc = new PortAllocator({ from: 18115, to: 18116 });
  t.equal(await alloc.acquire(), 18116);
  await t.rejects(alloc.acquire(), { code: 'SLUICE_ERR_NO_FREE_PORT' });
  t.same(alloc.held(), [18116], 'the busy port is not left held');
});

t.test('release makes a port available again', async (t) => {
  const alloc = new PortAllocator({ from: 18120, to: 18120 });
  const port = await alloc.acquire();
  await t.rejects(alloc.acquire(), { code: 'SLUICE_ERR_NO_FREE_PORT' });
  alloc.release(port);
  alloc.release(port);
  t.same(alloc.held(), []);
  t.equal(await alloc.acquire(), port);
});

t.test('released ports are reused last', async (t) => {
  const alloc = new PortAllocator({ from: 18121, to: 18123 });
  const first = await alloc.acquire();
  alloc.release(first);
  t.not(await alloc.acquire(), first);
});

t.test('reserve adopts a port without a bind check and refuses a held one', async (t) => {
  const server = await listen(18125);
  t.teardown(() => close(server));
  const alloc = new PortAllocator({ from: 18125, to: 18126 });
  alloc.reserve(18125);
  t.throws(() => alloc.reserve(18125), { code: 'SLUICE_ERR_CONFLICT' });
  t.equal(await alloc.acquire(), 18126);
  await t.rejects(alloc.acquire(), { code: 'SLUICE_ERR_NO_FREE_PORT' });
  alloc.reserve(9); // outside the range: an adopted server survives a change of range
  t.same(alloc.held(), [9, 18125, 18126]);
  t.throws(() => alloc.reserve(70_000), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'port' } });
});

t.test('options are validated', async (t) => {
  t.throws(() => new PortAllocator({ from: 8100, to: 8001 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'to' } });
  t.throws(() => new PortAllocator({ from: 0 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'from' } });
  const alloc = new PortAllocator();
  t.equal(alloc.from, 8001);
  t.equal(alloc.to, 8100);
  t.equal(alloc.host, '127.0.0.1');
});
