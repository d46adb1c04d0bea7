// `node --import evy/register app.mjs` (ESM or CJS app): patches net, tls, timers, fs and child_process
// before the app loads (EVY_PATCH=net,timers selects, EVY_PATCH=none disables). No loader thread.
// The package's exports map sends `evy/register` straight to dist/register-esm.js; this file is the same
// preload for a path (`--import ./node_modules/evy/register.mjs`).
import './dist/register-esm.js';
