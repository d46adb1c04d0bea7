// The body of `node --import evy/register` / `--require evy/register`: patches the builtins before the app
// loads. EVY_PATCH selects (`net,timers`, `all`, `none`; default all). It starts no loader thread. The code
// lives in monkey-patch.ts, inside the chunk every entry shares: each extra ESM file costs ~0.3-1 ms of
// startup, and this entry then loads two files (this one and that chunk) instead of six.
export { patchOptionsFromEnv, register } from './monkey-patch.js';
