// The MariaDB helper (startMariadb) against Debian's mariadb-server, through the unmodified mysql2 client: the
// server answers as the passwordless user, and it really runs queries side by side (the kill tests rely on it).
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mariadbAvailability, plan, requireServer, startMariadb, type MariadbServer } from './helpers/servers.js';

const avail = mariadbAvailability();
const { skip, title } = plan(avail, 'real MariaDB with the mysql2 client');

describe.skipIf(skip)(title, () => {
  let server: MariadbServer;

  beforeAll(async () => {
    requireServer(avail);
    server = await startMariadb();
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
  }, 60_000);

  it('the server answers (harness check)', async () => {
    const c = await mysql.createConnection(server.config);
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT 1 + 1 AS two, DATABASE() AS db');
      expect(rows[0]!.two).toBe(2);
      expect(rows[0]!.db).toBe('evy');
    } finally {
      await c.end();
    }
  });

  it('two connections each in SELECT SLEEP(0.6) finish together in under 1 s (one after the other would take 1.2 s)', async () => {
    const conns = await Promise.all([mysql.createConnection(server.config), mysql.createConnection(server.config)]);
    try {
      const t0 = performance.now();
      const results = await Promise.all(conns.map((c) => c.query<mysql.RowDataPacket[]>('SELECT SLEEP(0.6) AS s')));
      const ms = performance.now() - t0;
      for (const [rows] of results) expect(Number(rows[0]!.s)).toBe(0);
      // 0.2 s each would not tell: 0.4 s one after the other is under 1 s too.
      expect(ms).toBeGreaterThanOrEqual(590);
      expect(ms).toBeLessThan(1000);
    } finally {
      await Promise.all(conns.map((c) => c.end()));
    }
  });
});
