// Why did an operation fail? The chaos harness's classification rule (docs/chaos.md, "The counters"), kept
// pure so that test/chaos.test.ts can check it without servers. Every time is a performance.now() taken when
// the thing happened, never inferred afterwards:
//
//   thread  { killedAt?, firedAt? }  the first kill aimed at it (the kill call, or the moment withTimeout killed
//                                    it); the moment its own Timeout fired
//   failure { at, err, gen?, note? } when it failed; note.sentAt: when its request was handed to a connection
//                                    that was still open; note.queued: a command handed to a live watched client
//   gen     { dooms: [{ at, by }] }  kills that may legitimately destroy the shared handle: each one aimed at a
//                                    thread with an operation outstanding on it, at that moment
//
// A failure is explained only by something that happened before it:
// - expected: after its own thread's kill or fired deadline;
// - excused: after a doom of the handle it used, unless its request was already on that connection when the
//   doom came (two threads' requests outstanding at once make a connection shared: no kill may destroy it), or
//   it was a command queued in a live watched client (pg, mysql2) that died of a kill error (evy sees those
//   queues: the connection was shared);
// - collateral: anything else, including a failure of a killed thread from before its kill.

/** @returns {{ verdict: 'expected' | 'excused' | 'collateral', doom?: { at: number, by: string }, why: string }} */
export function classifyFailure(thread, f, isKillError) {
  if (thread.killedAt !== undefined && f.at >= thread.killedAt) return { verdict: 'expected', why: 'after its own kill' };
  if (thread.firedAt !== undefined && f.at >= thread.firedAt) return { verdict: 'expected', why: 'after its own deadline fired' };
  const dooms = f.gen?.dooms ?? [];
  const queuedThenKilled = f.note?.queued === true && isKillError(f.err);
  const sentAt = f.note?.sentAt;
  const before = dooms.filter((d) => d.at <= f.at);
  if (!queuedThenKilled) {
    const doom = before.find((d) => sentAt === undefined || sentAt >= d.at);
    if (doom !== undefined) return { verdict: 'excused', doom, why: `its handle was doomed by ${doom.by}` };
  }
  const why = [];
  if (thread.killedAt !== undefined) why.push(`it failed ${(thread.killedAt - f.at).toFixed(1)} ms before its own kill`);
  if (thread.firedAt !== undefined) why.push(`it failed ${(thread.firedAt - f.at).toFixed(1)} ms before its own deadline fired`);
  if (queuedThenKilled) why.push(`it died of a kill error although its command was already in the client's queue`);
  else if (before.length > 0) why.push(`its request was already on the connection (sent ${before.map((d) => `${(d.at - sentAt).toFixed(1)} ms before ${d.by}`).join(', ')}): that made it shared, no kill may destroy it`);
  const later = dooms.filter((d) => d.at > f.at);
  if (later.length > 0) why.push(`kills of its users came only later: ${later.map((d) => d.by).join(', ')}`);
  return { verdict: 'collateral', why: why.join('; ') };
}
