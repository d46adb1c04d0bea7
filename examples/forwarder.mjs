// A port forwarder: every connection to the local port is relayed to a remote address, both ways.
//   node examples/forwarder.mjs <listen port> <remote host> <remote port>
import { connect, listen, serve, spawn, SHUT_WR } from 'evy';

const [listenPort = '7000', remoteHost = '127.0.0.1', remotePort = '80'] = process.argv.slice(2);
const remote = [remoteHost, Number(remotePort)];
const server = await listen(['127.0.0.1', Number(listenPort)]);
const [host, bound] = server.getsockname();
console.log(`forwarder listening on ${host}:${bound} -> ${remote[0]}:${remote[1]}`);

/** Copies until EOF, then passes the EOF on (a half-close), so request/response protocols still work. */
async function forward(source, dest) {
  for (;;) {
    const data = await source.recv(32768);
    if (data.length === 0) break;
    await dest.sendall(data);
  }
  dest.shutdown(SHUT_WR);
}

async function relay(client) {
  let upstream;
  try {
    upstream = await connect(remote);
  } catch (e) {
    console.error(`cannot reach ${remote[0]}:${remote[1]}: ${e.code}`);
    return; // serve closes the client
  }
  const back = spawn(forward, upstream, client);
  try {
    await forward(client, upstream);
    await back.wait();
  } catch (e) {
    console.error(`relay: ${e.code ?? e.message}`);
  } finally {
    await back.kill();
    upstream.close();
  }
}

await serve(server, relay);
