// A chat server: every line a client sends goes to all the other clients.
//   node examples/chat-server.mjs [port]        then, in several terminals: nc 127.0.0.1 <port>
// Each client has a reader (its handler) and a writer thread fed by a bounded queue, so a slow client
// never blocks the others: when its queue is full it is dropped.
import { Full, listen, Queue, serve, spawn } from 'evy';

const port = Number(process.argv[2] ?? 6001);
const server = await listen(['127.0.0.1', port]);
const [host, bound] = server.getsockname();
console.log(`chat server listening on ${host}:${bound}`);

/** client socket -> its outgoing queue */
const participants = new Map();

function broadcast(from, line) {
  for (const [client, outbox] of participants) {
    if (client === from) continue;
    try {
      outbox.putNowait(line);
    } catch (e) {
      if (!(e instanceof Full)) throw e;
      participants.delete(client); // too slow to keep up
      client.close();
    }
  }
}

async function writer(client, outbox) {
  for (;;) await client.sendall(await outbox.get());
}

async function chat(client, addr) {
  const outbox = new Queue(1000);
  const out = spawn(writer, client, outbox);
  participants.set(client, outbox);
  const name = Array.isArray(addr) ? `${addr[0]}:${addr[1]}` : 'unix';
  try {
    const file = client.makefile('r');
    for await (const line of file) broadcast(client, `${name}: ${line}`);
  } catch (e) {
    console.error(`${name}: ${e.code ?? e.message}`);
  } finally {
    participants.delete(client);
    await out.kill();
  }
}

await serve(server, chat);
