// Run with `mocha --require evy/mocha`. The stuck tests fail at their timeout; every other test passes.
import assert from 'node:assert/strict';
import { TIMEOUT, checks, leaveServerListening, others, startSilentServer, stopSilentServer, stuck } from '../../shared/scenario.mjs';

describe('evy/mocha', function () {
  before(startSilentServer);
  after(stopSilentServer);

  it('stuck in a setInterval', function () {
    this.timeout(TIMEOUT); // `this` is mocha's Context inside the green thread too
    return stuck.interval();
  });
  it('the interval is gone', checks.interval);
  it('stuck on a sleep 60 child', function () {
    this.timeout(TIMEOUT);
    return stuck.child();
  });
  it('the child is gone', checks.child);
  it('stuck on an http request nobody answers', function () {
    this.timeout(TIMEOUT);
    return stuck.http();
  });
  it('the http request is gone', checks.http);
  (process.env.PGHOST ? it : it.skip)('stuck in SELECT pg_sleep(30)', function () {
    this.timeout(TIMEOUT);
    return stuck.pg();
  });
  (process.env.PGHOST ? it : it.skip)('the pg query is gone', checks.pg);
  it('leaves a server listening', leaveServerListening);
  it('the leaked server was closed', checks.leakedServer);
  it('callback-style tests still work', function (done) {
    setTimeout(done, 5);
  });
  it('a short wait passes', others.quickTimer);
  it('a server closed by its test is no leak', others.closedServerIsNoLeak);
  it('an awaited child is no leak', others.awaitedChildIsNoLeak);
  it('this.timeout() is readable inside the thread', function () {
    assert.equal(typeof this.timeout(), 'number');
    return others.last();
  });
});
