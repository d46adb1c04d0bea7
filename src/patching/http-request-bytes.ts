// An HTTP/1 request recognised by the first bytes a client writes on its connection.
//
// A client that speaks HTTP/1 on a raw socket (undici, Node's fetch) opens a connection for the request at the
// head of its queue and writes that request from the socket's connect callback. Those bytes are no handshake
// that someone else may be waiting on (net.ts, abandoned setups): they are the request itself.

const MAX_LINE = 8192;

/** True if `chunk` starts with an HTTP/1.x request line (`METHOD target HTTP/1.x\r\n`). */
export function httpRequestStart(chunk: unknown): boolean {
  let head: string;
  if (typeof chunk === 'string') head = chunk.slice(0, MAX_LINE);
  else if (chunk instanceof Uint8Array) head = String.fromCharCode(...chunk.subarray(0, Math.min(chunk.length, 1024)));
  else return false;
  const eol = head.indexOf('\r\n');
  return eol > 0 && REQUEST_LINE.test(head.slice(0, eol));
}

/** A method token, one space, a target without spaces, one space, the version. */
const REQUEST_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^\s]+ HTTP\/1\.[01]$/;
