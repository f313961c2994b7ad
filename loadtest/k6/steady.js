// steady.js: single-event beacons (what navigator.sendBeacon sends) at a constant
// arrival rate: open loop, so a slow gateway shows as latency and dropped
// iterations, not as a politely lower request rate.
//
//   bin/k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=2000 -e DURATION=1m loadtest/k6/steady.js
//
// Env: BASE_URL, RATE (2000 req/s), DURATION (1m), PRE_VUS, MAX_VUS, and the
// thresholds' knobs (P95_MS, P99_MS, FAILED_RATE, CHECKS_RATE, DROPPED_RATE); see README.md.

import { baseOptions, envNum, env, probe, sendSingle, session, thresholds, vus } from './lib.js';

const RATE = envNum('RATE', 2000);

export const options = baseOptions(
  {
    steady: Object.assign(
      { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: env('DURATION', '1m') },
      vus(RATE),
    ),
  },
  thresholds(['single'], RATE),
);

export function setup() {
  return probe();
}

export default function () {
  sendSingle(session());
}
