// An ordinary program that knows nothing of evy: it polls with a setInterval, starts a child process and
// waits for an HTTP answer that never comes. Run alone, it would hang for as long as the server stays silent.
import http from 'node:http';
import { spawn } from 'node:child_process';

export async function main(url) {
  let polls = 0;
  setInterval(() => polls++, 50);
  const child = spawn('sleep', ['30']);
  child.on('error', () => {});
  const res = await new Promise((resolve, reject) => http.get(url, resolve).on('error', reject));
  return `status ${res.statusCode} after ${polls} polls`; // never reached: the server never answers
}
