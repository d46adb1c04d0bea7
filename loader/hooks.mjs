// importPatched hooks for module.register (Node < 22.15: they run on Node's loader thread). The decisions are in
// core.cjs; this file only awaits. A CommonJS module of a patched tree must be loaded on the main thread (that is
// where it runs), so the load hook asks the main thread over the MessagePort it was given, and gets back the
// export names of the fresh instance (or that it threw).
import core from './core.cjs';

let port = null;
let seq = 0;
const pending = new Map();

export function initialize(data) {
  port = data.port;
  port.on('message', (m) => {
    const done = pending.get(m.seq);
    pending.delete(m.seq);
    if (pending.size === 0) port.unref();
    if (done !== undefined) done(m);
  });
  port.unref();
}

function ask(id, filename) {
  return new Promise((resolve) => {
    const s = ++seq;
    // Ref'd while an answer is outstanding: Node's loader thread treats an empty event loop as "this hook will
    // never settle" and fails the import.
    if (pending.size === 0) port.ref();
    pending.set(s, resolve);
    port.postMessage({ seq: s, id, filename });
  });
}

export async function resolve(specifier, context, next) {
  const plan = core.planResolve(specifier, context);
  if (plan.result !== undefined) return plan.result;
  if (plan.tag === undefined) return next(plan.spec, plan.context);
  let resolved;
  try {
    resolved = await next(plan.spec, plan.context);
  } catch (error) {
    throw core.entryFailed(plan, error);
  }
  return core.finishResolve(plan, resolved);
}

export async function load(url, context, next) {
  const plan = core.planLoad(url);
  if (plan === undefined) return next(url, context);
  if (plan.result !== undefined) return plan.result;
  const loaded = await next(url, context);
  if (loaded.format !== 'commonjs') return loaded;
  const { id, filename } = plan.cjs;
  const info = await ask(id, filename);
  if (info.error) throw core.cjsFailed(info);
  return { format: 'module', source: core.cjsFacade(id, filename, info), shortCircuit: true };
}
