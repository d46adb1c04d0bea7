// Why did an operation fail? The chaos harness's classification rule (docs/chaos.md, "The counters"), kept
// pure so that test/chaos.test.ts can check it without servers. Every time is a performance.now() taken when
// the thing happened, never inferred afterwards:
//
//   thread  { killedAt?, killedBy?, firedAt? }  the first kill aimed at it (the kill call, or the moment a
//                                    withTimeout killed it) and what it was; the moment its own Timeout fired
//   failure { at, err, gen?, note? } when it failed; note.sentAt: when its request reached the shared
//                                    connection while that was open; note.queued: that request was a command
//                                    handed to a live watched client (pg, mysql2)
//   gen     { dooms: [{ at, by }] }  kills that may legitimately destroy the shared handle: each one aimed at a
//                                    thread with an operation outstanding on it, at that moment
//
// A failure is explained only by something that happened before it:
// - expected: after its own thread's kill or fired deadline;
// - excused: after a doom of the handle it used, if its request never reached that connection while it was
//   open. A request on an open connection makes it that thread's too: with another thread's request outstanding
//   the connection is shared, and a setup abandoned by its killed connector is taken over. No other thread's
//   kill may destroy it under that request, whether the request came before the kill or after;
// - collateral: anything else, including a failure of a killed thread from before its kill;
// - misdirected: a collateral failure whose error is a server's cancel of the command (PostgreSQL 57014, MySQL
//   ER_QUERY_INTERRUPTED, a Redis UNBLOCKED): a cancel meant for a killed thread's command reached this one.

/** The server cancelled the command: PostgreSQL 57014 (query_canceled), MySQL/MariaDB 1317, Redis CLIENT UNBLOCK ... ERROR. */
export function isServerCancel(e) {
  if (e === null || typeof e !== 'object') return false;
  return e.code === '57014' || e.code === 'ER_QUERY_INTERRUPTED' || e.errno === 1317 || /^UNBLOCKED\b/.test(String(e.message ?? ''));
}

/** @returns {{ verdict: 'expected' | 'excused' | 'collateral' | 'misdirected', doom?: { at: number, by: string }, why: string }} */
export function classifyFailure(thread, f, isKillError) {
  if (thread.killedAt !== undefined && f.at >= thread.killedAt) return { verdict: 'expected', why: 'after its own kill' };
  if (thread.firedAt !== undefined && f.at >= thread.firedAt) return { verdict: 'expected', why: 'after its own deadline fired' };
  const dooms = f.gen?.dooms ?? [];
  const before = dooms.filter((d) => d.at <= f.at);
  const sentAt = f.note?.sentAt;
  if (before.length > 0 && sentAt === undefined) return { verdict: 'excused', doom: before[0], why: `its handle was doomed by ${before[0].by}` };
  const why = [];
  if (thread.killedAt !== undefined) why.push(`it failed ${(thread.killedAt - f.at).toFixed(1)} ms before its own kill${thread.killedBy ? ` (${thread.killedBy})` : ''}`);
  if (thread.firedAt !== undefined) why.push(`it failed ${(thread.firedAt - f.at).toFixed(1)} ms before its own deadline fired`);
  if (before.length > 0) {
    const when = before.map((d) => `${Math.abs(d.at - sentAt).toFixed(1)} ms ${sentAt < d.at ? 'before' : 'after'} ${d.by}`).join(', ');
    const queued = f.note?.queued === true ? `, as a command in the client's queue${isKillError(f.err) ? ', and died of a kill error' : ''}` : '';
    why.push(`its request reached the open connection ${when}${queued}: no other thread's kill may destroy it under that request`);
  }
  const later = dooms.filter((d) => d.at > f.at);
  if (later.length > 0) why.push(`kills of its users came only later: ${later.map((d) => d.by).join(', ')}`);
  return { verdict: isServerCancel(f.err) ? 'misdirected' : 'collateral', why: why.join('; ') };
}
