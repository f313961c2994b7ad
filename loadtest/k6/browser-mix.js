// browser-mix.js: what a site's visitors and its SDKs send, mixed: sendBeacon
// single events (text/plain), SDK batches (JSON arrays of 10-50 events), gzip
// batches, NDJSON, image pixels (query parameters, ?e=JSON, ?e=base64url JSON)
// and CORS preflights, at one constant arrival rate. Every request is tagged
// kind=single|batch|gzip|ndjson|pixel|preflight, with per-kind thresholds.
//
//   bin/k6 run -e BASE_URL=https://sluice.example.com loadtest/k6/browser-mix.js
//   bin/k6 run -e MIX=single=60,pixel=40 -e RATE=500 loadtest/k6/browser-mix.js
//
// Env: BASE_URL, RATE (500 req/s), DURATION (1m), MIX (see lib.js DEFAULT_MIX),
// BATCH_MIN/BATCH_MAX (10/50), NDJSON_MIN/NDJSON_MAX (5/30), PRE_VUS, MAX_VUS and
// the thresholds' knobs; see README.md.

import { DEFAULT_MIX, baseOptions, env, envNum, parseMix, probe, sendMixed, thresholds, vus } from './lib.js';

const RATE = envNum('RATE', 500);
const MIX = parseMix(env('MIX', DEFAULT_MIX));

export const options = baseOptions(
  {
    browser_mix: Object.assign(
      { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: env('DURATION', '1m') },
      vus(RATE),
    ),
  },
  thresholds(MIX.map((m) => m[0]), RATE),
);

export function setup() {
  return probe();
}

export default function () {
  sendMixed(MIX);
}
