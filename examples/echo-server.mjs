// An echo server in the blocking style: one green thread per client, recv/sendall in a plain loop.
//   node examples/echo-server.mjs [port]        then: nc 127.0.0.1 <port>
import { listen, serve } from 'evy';

const port = Number(process.argv[2] ?? 6000);
const server = await listen(['127.0.0.1', port]);
const [host, bound] = server.getsockname();
console.log(`echo server listening on ${host}:${bound}`);

async function echo(client, addr) {
  try {
    for (;;) {
      const data = await client.recv(65536);
      if (data.length === 0) return; // the client closed: serve closes our side
      await client.sendall(data);
    }
  } catch (e) {
    // One bad client (a reset, a timeout) must not take the server down: serve rethrows handler errors.
    console.error(`client ${addr}: ${e.code ?? e.message}`);
  }
}

await serve(server, echo);
