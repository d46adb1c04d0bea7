// `node --import evy/register`: the package's exports map points here, so the preload is this file and the
// chunk it shares with 'evy', two ESM files (each one more costs ~0.3-0.6 ms of startup on Node 24; see
// docs/architecture.md for what keeps it at two).
import { register } from './monkey-patch.js';

register('import');
