// Run with `node --import evy/node-test --test`. The stuck tests fail at their timeout; every other test passes.
import test, { after, before, mock } from 'node:test';
import assert from 'node:assert/strict';
import { TIMEOUT, checks, leaveServerListening, others, startSilentServer, stopSilentServer, stuck } from '../../shared/scenario.mjs';

before(startSilentServer);
after(stopSilentServer);

test('stuck in a setInterval', { timeout: TIMEOUT }, stuck.interval);
test('the interval is gone', checks.interval);
test('stuck on a sleep 60 child', { timeout: TIMEOUT }, stuck.child);
test('the child is gone', checks.child);
test('stuck on an http request nobody answers', { timeout: TIMEOUT }, stuck.http);
test('the http request is gone', checks.http);
test('stuck in SELECT pg_sleep(30)', { timeout: TIMEOUT, skip: !process.env.PGHOST && 'no PGHOST' }, stuck.pg);
test('the pg query is gone', { skip: !process.env.PGHOST && 'no PGHOST' }, checks.pg);
test('leaves a server listening', leaveServerListening);
test('the leaked server was closed', checks.leakedServer);
test('mock.timers work inside a green thread', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  let fired = false;
  setTimeout(() => (fired = true), 10_000);
  mock.timers.tick(10_000);
  mock.timers.reset();
  assert.equal(fired, true);
});
test('a short wait passes', others.quickTimer);
test('callback-style tests still work', (t, done) => {
  setTimeout(done, 5);
});
test('a server closed by its test is no leak', others.closedServerIsNoLeak);
test('an awaited child is no leak', async () => {
  await others.awaitedChildIsNoLeak();
  await others.last();
});
