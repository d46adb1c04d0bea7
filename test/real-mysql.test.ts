// The MariaDB helper (startMariadb) against Debian's mariadb-server, through the unmodified mysql2 client: the
// server answers the test user (password authentication, as in production), and it really runs queries side by
// side (the kill tests rely on it).
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

  it('runs queries side by side: a short query on a second connection finishes while a long one runs on the first', async () => {
    // No timing bound: the long query is seen running (the server's process list) before the short one
    // starts, and is still unsettled when the short one returns; then it is stopped with KILL QUERY.
    const [long, short] = await Promise.all([mysql.createConnection(server.config), mysql.createConnection(server.config)]);
    try {
      let settled = false;
      const running = long.query<mysql.RowDataPacket[]>('SELECT SLEEP(60) AS s').finally(() => (settled = true));
      const seen = async (): Promise<boolean> => {
        const [rows] = await short.query<mysql.RowDataPacket[]>('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE ?', [long.threadId, 'SELECT SLEEP(60)%']);
        return Number(rows[0]!.n) === 1;
      };
      for (let i = 0; !(await seen()); i++) {
        if (i > 500 || settled) throw new Error('the long query never showed up in the process list');
        await new Promise((r) => setTimeout(r, 10));
      }
      const [rows] = await short.query<mysql.RowDataPacket[]>('SELECT SLEEP(0.05) AS s, 7 AS n');
      expect(Number(rows[0]!.n)).toBe(7);
      expect(settled).toBe(false);
      await short.query(`KILL QUERY ${Number(long.threadId)}`);
      await expect(running).rejects.toMatchObject({ code: 'ER_QUERY_INTERRUPTED' });
    } finally {
      await Promise.all([long.end(), short.end()]);
    }
  });
});
