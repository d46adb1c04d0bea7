// A database connection whose client evy does not watch, recognised by its first bytes.
//
// Database clients queue commands in JavaScript (pg, mysql2, ioredis, node-redis, postgres.js...), so a
// thread's write on their connection does not tell that nobody else is waiting behind it. evy watches the
// ones it finds as they load (finder.ts). A client it cannot find (bundled by esbuild or webpack, or one it
// has no adapter for) would have its connection destroyed by the kill of whichever thread's command was in
// flight, under the commands queued behind it. So a connection that speaks PostgreSQL, MySQL or Redis and
// is not a watched client's is shared from its first bytes: no kill destroys it (the killed thread's
// command runs to its end; the thread is detached after the grace).

/** The protocol a connection's first bytes speak, if a database's: `fromServer` for the first ones received. */
export function databaseProtocol(chunk: unknown, fromServer: boolean): 'postgres' | 'mysql' | 'redis' | null {
  if (typeof chunk === 'string') return !fromServer && isResp(chunk.charCodeAt(0), (i) => chunk.charCodeAt(i), chunk.length) ? 'redis' : null;
  if (!(chunk instanceof Uint8Array) || chunk.length < 5) return null;
  const b = chunk;
  if (fromServer) {
    // MySQL/MariaDB speak first: a greeting packet (3-byte length, sequence 0, protocol version 10).
    const len = b[0]! | (b[1]! << 8) | (b[2]! << 16);
    return b[3] === 0 && b[4] === 10 && len > 0 && len + 4 <= b.length ? 'mysql' : null;
  }
  if (b.length >= 8) {
    // PostgreSQL's first message: StartupMessage (protocol 3.0), SSLRequest or GSSENCRequest, its length first.
    const len = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    const code = ((b[4]! << 24) | (b[5]! << 16) | (b[6]! << 8) | b[7]!) >>> 0;
    if (len >= 8 && len <= b.length && (code === 196608 || code === 80877103 || code === 80877104)) return 'postgres';
  }
  return isResp(b[0]!, (i) => b[i]!, b.length) ? 'redis' : null;
}

/** A RESP command: `*<count>\r\n$<length>\r\n`. */
function isResp(first: number, at: (i: number) => number, n: number): boolean {
  if (first !== 0x2a) return false; // *
  let i = 1;
  while (i < n && at(i) >= 0x30 && at(i) <= 0x39) i++;
  return i > 1 && i + 2 < n && at(i) === 0x0d && at(i + 1) === 0x0a && at(i + 2) === 0x24; // \r\n$
}
