// Each bench reports its target figures as one `EVY_SUMMARY {json}` line; bench/run.mjs collects them
// into one table per Node version.
export function summary(row) {
  console.log(`EVY_SUMMARY ${JSON.stringify(row)}`);
}
