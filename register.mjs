// `node --import evy/register app.mjs` (ESM or CJS app): patches net, tls, timers, fs and child_process
// before the app loads (EVY_PATCH=net,timers selects, EVY_PATCH=none disables). No loader thread.
import { register } from './dist/register.js';

register('import');
