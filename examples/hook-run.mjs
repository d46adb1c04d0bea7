// Part 5 of the tour, run as `node --import ./register.mjs examples/hook-run.mjs <url>`: the register hook has
// made net, timers and child_process cooperative before unaware-app.mjs loaded, so withTimeout can cut its
// main() like any green thread: the socket, the child and the interval it left behind are destroyed with it.
import { withTimeout, isMonkeyPatched } from 'evy';
import { main } from './unaware-app.mjs';

// What the process holds, by type (its own stdout/stderr pipes included: they are there before and after).
const resources = () => {
  const counts = new Map();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return [...counts].map(([r, n]) => (n > 1 ? `${r} x${n}` : r)).sort().join(', ') || '(none)';
};
const settle = async () => {
  // Destroyed handles close on a later loop turn, an exited child is reaped a little later.
  for (let i = 0; i < 40 && resources() !== before; i++) await new Promise((r) => setTimeout(r, 10));
};

console.log(`patched by the hook: ${['net', 'timers', 'child_process'].filter(isMonkeyPatched).join(', ')}`);
void process.stderr; // (stdout and stderr are opened on first use: both are there before, during and after)
await new Promise((r) => setTimeout(r, 20)); // startup's own requests finish
const before = resources();
console.log(`resources before:  ${before}`);
let during = '';
const peek = setTimeout(() => (during = resources()), 300);
const t0 = performance.now();
try {
  console.log(`main() returned: ${await withTimeout(0.5, main, process.argv[2])}`);
} catch (e) {
  console.log(`withTimeout(0.5) cut main() after ${((performance.now() - t0) / 1000).toFixed(2)} s: ${e.name}`);
}
clearTimeout(peek);
console.log(`resources during:  ${during}`);
await settle();
const after = resources();
console.log(`resources after:   ${after}`);
console.log(after === before ? 'nothing of the app is left: socket destroyed, child terminated, interval cleared' : 'LEFT BEHIND: see above');
