// soak.js: a long run at a moderate constant rate, the browser mix by default,
// to find what only time shows: memory or goroutine growth, a WAL that is not
// truncated, a backlog that creeps up, latency that drifts. Requests in the
// first and the last WINDOW_PCT % of the run are tagged window=first / window=last
// (the rest window=middle) and the last window has its own thresholds, so a
// drift fails the run even when the overall percentiles still look fine.
//
//   bin/k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/soak.js          # 30 minutes at 300 req/s
//   bin/k6 run -e DURATION=4h -e RATE=1000 -e MIX=single=1 loadtest/k6/soak.js
//
// Env: BASE_URL, RATE (300 req/s), DURATION (30m), MIX (the browser mix),
// WINDOW_PCT (10), PRE_VUS, MAX_VUS and the thresholds' knobs; see README.md.

import exec from 'k6/execution';
import { DEFAULT_MIX, SENDERS, baseOptions, env, envNum, parseDuration, parseMix, pickWeighted, probe, session, thresholds, vus } from './lib.js';

const RATE = envNum('RATE', 300);
const DURATION = env('DURATION', '30m');
const SECONDS = parseDuration(DURATION);
const WINDOW = (SECONDS * envNum('WINDOW_PCT', 10)) / 100;
const MIX = parseMix(env('MIX', DEFAULT_MIX));

const th = thresholds(MIX.map((m) => m[0]), RATE);
// The last window must meet the same latency and failure limits as the whole run;
// the first window's numbers are shown next to it for comparison.
th['http_req_duration{window:last}'] = th.http_req_duration.slice();
th['http_req_failed{window:last}'] = th.http_req_failed.slice();
th['http_req_duration{window:first}'] = ['max>=0'];

export const options = baseOptions(
  {
    soak: Object.assign({ executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: DURATION }, vus(RATE)),
  },
  th,
);

export function setup() {
  return probe();
}

export default function () {
  const elapsed = (Date.now() - exec.scenario.startTime) / 1000;
  const window = elapsed < WINDOW ? 'first' : elapsed >= SECONDS - WINDOW ? 'last' : 'middle';
  exec.vu.metrics.tags.window = window;
  SENDERS[pickWeighted(MIX)](session());
}
