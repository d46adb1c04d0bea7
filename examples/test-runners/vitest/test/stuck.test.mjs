// Run with `vitest run` (vitest.config.mjs sets `runner: 'evy/vitest'`). The stuck tests fail at their
// timeout; every other test passes.
import net from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { TIMEOUT, checks, leaveServerListening, others, startSilentServer, stopSilentServer, stuck } from '../../shared/scenario.mjs';

beforeAll(startSilentServer);
afterAll(stopSilentServer);

test('stuck in a setInterval', stuck.interval, TIMEOUT);
test('the interval is gone', checks.interval);
test('stuck on a sleep 60 child', stuck.child, TIMEOUT);
test('the child is gone', checks.child);
test('stuck on an http request nobody answers', stuck.http, TIMEOUT);
test('the http request is gone', checks.http);
test.skipIf(!process.env.PGHOST)('stuck in SELECT pg_sleep(30)', stuck.pg, TIMEOUT);
test.skipIf(!process.env.PGHOST)('the pg query is gone', checks.pg);
test('leaves a server listening', leaveServerListening);
test('the leaked server was closed', checks.leakedServer);
test('vi.useFakeTimers works inside a green thread', () => {
  vi.useFakeTimers();
  try {
    let fired = false;
    setTimeout(() => (fired = true), 10_000);
    vi.advanceTimersByTime(10_000);
    expect(fired).toBe(true);
  } finally {
    vi.useRealTimers();
  }
});
test('a short wait passes', others.quickTimer);
describe('per-test hooks', () => {
  let srv;
  beforeEach(async () => {
    srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  });
  afterEach(() => new Promise((r) => srv.close(r)));
  test('a server from beforeEach closed in afterEach is no leak', () => {
    expect(srv.listening).toBe(true);
  });
});
test('a server closed by its test is no leak', others.closedServerIsNoLeak);
test('an awaited child is no leak', async () => {
  await others.awaitedChildIsNoLeak();
  await others.last();
});
