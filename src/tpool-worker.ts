// The worker side of evy.tpool (loaded by piscina in each worker thread). Free of evy's runtime (a worker is
// a plain thread, with no green threads of its own), and of errors.ts too: were this entry to import it,
// the bundler would keep errors.ts in a chunk of its own, one more file in every preload of evy/register.
import { pathToFileURL } from 'node:url';

export interface TpoolTask {
  /** Source of a self-contained function (`fn.toString()`), or */
  src?: string;
  name?: string;
  /** a module (absolute path, file: URL or package specifier) and the export to call. */
  mod?: string;
  args: unknown[];
}

const compiled = new Map<string, (...args: unknown[]) => unknown>();

function compile(src: string, name: string | undefined): (...args: unknown[]) => unknown {
  let fn = compiled.get(src);
  if (fn !== undefined) return fn;
  try {
    // An arrow, a function expression or a class method of the form `async name(a) {...}`.
    fn = new Function(`return (${src});`)() as (...args: unknown[]) => unknown;
  } catch {
    fn = new Function(`return ({ ${src} })[${JSON.stringify(name ?? '')}];`)() as (...args: unknown[]) => unknown;
  }
  if (typeof fn !== 'function') throw new TypeError(`tpool: the source of ${name || 'the function'} did not evaluate to a function`);
  if (compiled.size > 500) compiled.clear();
  compiled.set(src, fn);
  return fn;
}

/** Key of the envelope an error travels in: a thrown Error loses `code` and its class in a structured clone. */
export const ERROR_KEY = '__evyTpoolError';

export interface ErrorEnvelope {
  name?: string;
  message?: string;
  stack?: string;
  props?: Record<string, unknown>;
  /** A thrown non-Error value. */
  value?: unknown;
  isError: boolean;
}

function envelope(e: unknown): { [ERROR_KEY]: ErrorEnvelope } {
  if (!(e instanceof Error)) {
    try {
      return { [ERROR_KEY]: { isError: false, value: structuredClone(e) } };
    } catch {
      return { [ERROR_KEY]: { isError: false, value: String(e) } };
    }
  }
  const props: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (v === null || ['string', 'number', 'boolean', 'bigint', 'undefined'].includes(typeof v)) props[k] = v;
  }
  return { [ERROR_KEY]: { isError: true, name: e.name, message: e.message, stack: e.stack, props } };
}

export default async function runTask(task: TpoolTask): Promise<unknown> {
  try {
    return await call(task);
  } catch (e) {
    return envelope(e);
  }
}

async function call(task: TpoolTask): Promise<unknown> {
  let fn: unknown;
  if (task.src !== undefined) {
    fn = compile(task.src, task.name);
  } else {
    const spec = task.mod!;
    const mod = await import(spec.startsWith('/') ? pathToFileURL(spec).href : spec);
    const name = task.name ?? 'default';
    fn = mod[name];
    if (typeof fn !== 'function' && name === 'default') fn = mod['module.exports'] ?? mod.default?.default;
    if (typeof fn !== 'function') {
      throw Object.assign(new TypeError(`tpool: ${spec} has no function export named "${name}"`), { code: 'ERR_EVY_TPOOL_EXPORT' });
    }
  }
  return await (fn as (...args: unknown[]) => unknown)(...task.args);
}
