// Helpers for the networking tests: resource accounting and small raw-net peers.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const KINDS = ['TCPSocketWrap', 'TCPServerWrap', 'PipeWrap', 'PipeServerWrap', 'Timeout', 'TLSWrap'];

export function countResources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of KINDS) out[k] = 0;
  for (const r of process.getActiveResourcesInfo()) if (r in out) out[r]!++;
  return out;
}

/** Waits (up to 2 s) until no more sockets, servers or timers are active than in `before`; then asserts it. */
export async function expectNoLeaks(before: Record<string, number>): Promise<void> {
  const extra = (): string[] => {
    const now = countResources();
    return KINDS.filter((k) => now[k]! > before[k]!).map((k) => `${k}: ${before[k]} -> ${now[k]}`);
  };
  for (let i = 0; i < 100 && extra().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  const left = extra();
  if (left.length > 0) throw new Error(`resources left behind: ${left.join(', ')}`);
}

export const sha = (b: Buffer | Buffer[]): string => {
  const h = createHash('sha256');
  for (const x of Array.isArray(b) ? b : [b]) h.update(x);
  return h.digest('hex');
};

/** A deterministic pseudo-random generator (so a failing chunking can be replayed from its seed). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

export function payload(n: number): Buffer {
  return randomBytes(n);
}

/** A raw net server on 127.0.0.1 whose connections go to `onConn`; resolves [server, port]. */
export async function rawServer(onConn: (s: net.Socket) => void, host = '127.0.0.1'): Promise<[net.Server, number]> {
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  return [srv, (srv.address() as net.AddressInfo).port];
}

export function closeServer(srv: net.Server): Promise<void> {
  return new Promise((r) => srv.close(() => r()));
}

/** A raw client connection; resolves once connected. */
export function rawConnect(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host, () => resolve(s));
    s.on('error', reject);
  });
}

/** Everything a raw socket receives until EOF (or an error). */
export function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', () => resolve(Buffer.concat(parts)));
    s.on('close', () => resolve(Buffer.concat(parts)));
  });
}

export function tempDir(prefix = 'evy-net-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
