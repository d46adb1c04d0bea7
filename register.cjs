// `node --require evy/register app.cjs`: the CommonJS form of register.mjs (same state, same rules).
'use strict';
require('./dist/register.cjs').register('require');
