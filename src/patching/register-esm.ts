// `node --import evy/register`: the package's exports map points here, so the preload is this file and the
// chunk it shares with 'evy' (plus the errors chunk): one ESM file fewer than going through register.mjs
// (~0.3-0.6 ms of startup each, measured on Node 24).
import { register } from './monkey-patch.js';

register('import');
