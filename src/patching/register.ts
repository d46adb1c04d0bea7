// The body of `node --import evy/register` / `--require evy/register`: patches the builtins before the app
// loads. EVY_PATCH selects (`net,timers`, `all`, `none`; default all). A separate, small entry: it must not
// load the rest of evy (nor net/tls) at startup, and it starts no loader thread.
import { layer } from './layer.js';
import type { MonkeyPatchOptions } from './monkey-patch.js';

const { monkeyPatch } = layer.patch;
const { ps } = layer.state;

/** Parses EVY_PATCH into monkeyPatch options; null for `none`. */
export function patchOptionsFromEnv(value: string | undefined): MonkeyPatchOptions | null {
  const v = (value ?? '').trim();
  if (v === '' || v === 'all') return {};
  if (v === 'none') return null;
  const opts: Record<string, boolean> = {};
  for (const part of v.split(',')) {
    const name = part.trim();
    if (name !== '') opts[name] = true;
  }
  return opts;
}

/** Patches once per process; a second registration (ESM + CJS, or twice on the command line) warns and does nothing. */
export function register(how: 'import' | 'require'): void {
  if (ps.registered !== null) {
    process.emitWarning(`evy/register was loaded twice (first with --${ps.registered}, now with --${how}); the second is ignored`, {
      code: 'EVY_REGISTER_TWICE',
    });
    return;
  }
  ps.registered = how;
  let opts: MonkeyPatchOptions | null;
  try {
    opts = patchOptionsFromEnv(process.env.EVY_PATCH);
    if (opts !== null) monkeyPatch(opts);
  } catch (e) {
    // A typo in EVY_PATCH must not silently run the app unpatched.
    (e as Error).message = `EVY_PATCH=${process.env.EVY_PATCH}: ${(e as Error).message}`;
    throw e;
  }
}
