// ramp-spike.js: a knee search, then a spike, one after the other. Every step
// and phase is its own k6 scenario, so k6 itself tags each request (and each
// dropped iteration) with it, exactly, even when k6 runs late under load.
//
//  knee   constant-arrival-rate steps (RATES, each STEP_DURATION, scenarios
//         knee_<rate>, tag step=<rate>) to find the knee: the highest rate the
//         gateway still serves on time. Past the knee, latency climbs, iterations
//         are dropped (every VU is waiting) or Sluice answers 503: expected, so
//         the steps have no pass/fail thresholds; the summary prints a table per
//         step and names the knee.
//  spike  scenarios base (BASE_RATE for BASE_DURATION), spike (up to
//         SPIKE_FACTOR x BASE_RATE in SPIKE_RAMP, held SPIKE_DURATION, down in
//         SPIKE_RAMP), settle (BASE_RATE for SETTLE_DURATION, while a backlog
//         drains: not judged) and recovery (BASE_RATE for RECOVERY_DURATION), tag
//         phase=<name>. base and recovery must meet the usual thresholds; the
//         spike only SPIKE_FAILED_RATE and SPIKE_P99_MS (503 + Retry-After fast is
//         the right answer to overload, an unbounded wait is not).
//
//   bin/k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/ramp-spike.js
//   bin/k6 run -e PHASES=spike -e BASE_RATE=500 -e SPIKE_FACTOR=10 loadtest/k6/ramp-spike.js
//
// Env (defaults): BASE_URL, PHASES (knee,spike), MIX (single=1: sendBeacon events;
// any browser-mix MIX works), RATES (500,1000,2000,4000,6000,8000,12000,16000),
// STEP_DURATION (20s), KNEE_P99_MS (the kinds' p99 limit), KNEE_FAILED_RATE (0.01),
// BASE_RATE (1000), SPIKE_FACTOR (10), BASE_DURATION (30s), SPIKE_RAMP (2s),
// SPIKE_DURATION (20s), SETTLE_DURATION (10s), RECOVERY_DURATION (60s), GAP (10s
// between the knee and the spike), SPIKE_FAILED_RATE (0.05), SPIKE_P99_MS (2000),
// PRE_VUS, MAX_VUS, SUMMARY_JSON (also write k6's summary data as JSON to this file).

import { SENDERS, baseOptions, env, envNum, limitMs, parseDuration, parseMix, pickWeighted, probe, session, thresholds, vus } from './lib.js';

const PHASES = env('PHASES', 'knee,spike').split(',').map((s) => s.trim()).filter(Boolean);
const MIX = parseMix(env('MIX', 'single=1'));
const KINDS = MIX.map((m) => m[0]);

const RATES = env('RATES', '500,1000,2000,4000,6000,8000,12000,16000').split(',').map((s) => Number(s.trim()));
const STEP_S = parseDuration(env('STEP_DURATION', '20s'));

const BASE_RATE = envNum('BASE_RATE', 1000);
const SPIKE_RATE = Math.round(BASE_RATE * envNum('SPIKE_FACTOR', 10));
const BASE_S = parseDuration(env('BASE_DURATION', '30s'));
const SPIKE_RAMP_S = parseDuration(env('SPIKE_RAMP', '2s'));
const SPIKE_S = parseDuration(env('SPIKE_DURATION', '20s'));
const SETTLE_S = parseDuration(env('SETTLE_DURATION', '10s'));
const RECOVERY_S = parseDuration(env('RECOVERY_DURATION', '60s'));
const GAP_S = parseDuration(env('GAP', '10s'));

for (const r of RATES) if (!(r > 0)) throw new Error(`RATES: ${JSON.stringify(env('RATES', ''))} must be positive numbers`);
for (const p of PHASES) if (p !== 'knee' && p !== 'spike') throw new Error(`PHASES: unknown phase ${JSON.stringify(p)}; use knee, spike or both`);

// In-flight requests of a step may finish during the next one (they keep their
// own step's tag); after this long they are cut.
const GRACEFUL_STOP = env('REQ_TIMEOUT', '10s');

const scenarios = {};
const th = {};
const INFO = ['max>=0']; // informational: makes k6 compute the sub-metric for the summary

function constant(rate, seconds, startS, tags) {
  return { executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration: `${seconds}s`, startTime: `${startS}s`, gracefulStop: GRACEFUL_STOP, tags, ...vus(rate) };
}

function describe(prefix, tag, value) {
  th[`http_req_duration{${tag}:${value}}`] = INFO;
  th[`http_req_failed{${tag}:${value}}`] = ['rate>=0'];
  th[`http_reqs{${tag}:${value}}`] = ['count>=0'];
  th[`dropped_iterations{scenario:${prefix}}`] = ['count>=0'];
}

let t = 0;
if (PHASES.includes('knee')) {
  for (const r of RATES) {
    scenarios[`knee_${r}`] = constant(r, STEP_S, t, { step: String(r) });
    describe(`knee_${r}`, 'step', r);
    t += STEP_S;
  }
  t += GAP_S;
}

if (PHASES.includes('spike')) {
  scenarios.base = constant(BASE_RATE, BASE_S, t, { phase: 'base' });
  t += BASE_S;
  scenarios.spike = {
    executor: 'ramping-arrival-rate', startRate: BASE_RATE, timeUnit: '1s', startTime: `${t}s`, gracefulStop: GRACEFUL_STOP,
    stages: [
      { target: SPIKE_RATE, duration: `${SPIKE_RAMP_S}s` },
      { target: SPIKE_RATE, duration: `${SPIKE_S}s` },
      { target: BASE_RATE, duration: `${SPIKE_RAMP_S}s` },
    ],
    tags: { phase: 'spike' },
    ...vus(SPIKE_RATE),
  };
  t += SPIKE_S + 2 * SPIKE_RAMP_S;
  scenarios.settle = constant(BASE_RATE, SETTLE_S, t, { phase: 'settle' });
  t += SETTLE_S;
  scenarios.recovery = constant(BASE_RATE, RECOVERY_S, t, { phase: 'recovery' });
  for (const phase of ['base', 'spike', 'settle', 'recovery']) describe(phase, 'phase', phase);
  // base and recovery: the kinds' usual limits (P95_MS, P99_MS, FAILED_RATE, CHECKS_RATE...)
  const usual = thresholds(KINDS, 0);
  for (const phase of ['base', 'recovery']) {
    th[`http_req_failed{phase:${phase}}`] = usual.http_req_failed;
    th[`http_req_duration{phase:${phase}}`] = usual.http_req_duration;
    th[`checks{phase:${phase}}`] = usual.checks;
  }
  th['http_req_failed{phase:spike}'] = [`rate<${envNum('SPIKE_FAILED_RATE', 0.05)}`];
  th['http_req_duration{phase:spike}'] = [`p(99)<${envNum('SPIKE_P99_MS', 2000)}`];
}

export const options = baseOptions(scenarios, th);

export function setup() {
  return probe();
}

export default function () {
  SENDERS[pickWeighted(MIX)](session());
}

// ---------------------------------------------------------------- summary

function num(x, digits) {
  if (x === undefined || x === null || Number.isNaN(x)) return '-';
  return x.toFixed(digits);
}

function pad(s, n) {
  s = String(s);
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

function row(cols, widths) {
  return cols.map((c, i) => (i === 0 ? String(c).padEnd(widths[0]) : pad(c, widths[i]))).join('  ');
}

function stats(data, tag, value, seconds, scenario) {
  const d = data.metrics[`http_req_duration{${tag}:${value}}`];
  const f = data.metrics[`http_req_failed{${tag}:${value}}`];
  const n = data.metrics[`http_reqs{${tag}:${value}}`];
  const dr = data.metrics[`dropped_iterations{scenario:${scenario}}`];
  const count = n ? n.values.count : 0;
  return {
    count,
    dropped: dr ? dr.values.count : 0,
    achieved: seconds > 0 ? count / seconds : undefined,
    p50: d ? d.values.med : undefined,
    p95: d ? d.values['p(95)'] : undefined,
    p99: d ? d.values['p(99)'] : undefined,
    max: d ? d.values.max : undefined,
    failed: f ? f.values.rate : undefined,
  };
}

function kneeTable(data) {
  const kneeP99 = envNum('KNEE_P99_MS', Math.max(...KINDS.map((k) => limitMs(k, 'p99'))));
  const kneeFailed = envNum('KNEE_FAILED_RATE', 0.01);
  const w = [10, 12, 9, 9, 9, 9, 9, 9, 30];
  const lines = [
    `Knee search (${MIX.map((m) => m[0]).join('+')}): steps of ${STEP_S}s; a step is ok when it achieved >= 95 % of its`,
    `target rate (the rest was dropped: no free VU), failed < ${kneeFailed * 100} % and p99 < ${kneeP99} ms.`,
    '',
    row(['target/s', 'achieved/s', 'dropped', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'failed %', 'verdict'], w),
  ];
  let lastOK = null;
  let firstBad = null;
  for (const rate of RATES) {
    const s = { rate };
    const st = stats(data, 'step', rate, STEP_S, `knee_${rate}`);
    const why = [];
    if (st.count === 0) why.push('no requests');
    else {
      if (st.achieved < 0.95 * s.rate) why.push(`achieved ${Math.round((100 * st.achieved) / s.rate)} %`);
      if (st.failed >= kneeFailed) why.push(`failed ${num(st.failed * 100, 2)} %`);
      if (st.p99 >= kneeP99) why.push(`p99 ${num(st.p99, 0)} ms`);
    }
    const ok = why.length === 0;
    if (ok && firstBad === null) lastOK = s;
    if (!ok && firstBad === null) firstBad = { s, why };
    lines.push(row([s.rate, num(st.achieved, 0), st.dropped, num(st.p50, 2), num(st.p95, 2), num(st.p99, 2), num(st.max, 1),
      num(st.failed === undefined ? undefined : st.failed * 100, 3), ok ? 'ok' : why.join(', ')], w));
  }
  lines.push('');
  if (firstBad === null) lines.push(`Knee: not reached; every step up to ${RATES[RATES.length - 1]} req/s was ok (raise RATES).`);
  else if (lastOK === null) lines.push(`Knee: below the first step (${RATES[0]} req/s): ${firstBad.why.join(', ')}.`);
  else lines.push(`Knee: between ${lastOK.rate} req/s (ok) and ${firstBad.s.rate} req/s (${firstBad.why.join(', ')}).`);
  lines.push('(On one machine k6 competes with the gateway for the cores; use `make bench` for capacity numbers.)');
  return lines;
}

function spikeTable(data) {
  const w = [10, 8, 12, 9, 9, 9, 9, 9, 9];
  const secs = { base: BASE_S, spike: SPIKE_S + 2 * SPIKE_RAMP_S, settle: SETTLE_S, recovery: RECOVERY_S };
  // the spike's mean offered rate, ramps included
  const spikeMean = Math.round((SPIKE_RAMP_S * (BASE_RATE + SPIKE_RATE) + SPIKE_S * SPIKE_RATE) / (SPIKE_S + 2 * SPIKE_RAMP_S));
  const target = { base: BASE_RATE, spike: spikeMean, settle: BASE_RATE, recovery: BASE_RATE };
  const lines = [
    `Spike: ${BASE_RATE} req/s for ${BASE_S}s, ${SPIKE_RATE} req/s for ${SPIKE_S}s (${SPIKE_RAMP_S}s ramps), then ${BASE_RATE} req/s (settle ${SETTLE_S}s, recovery ${RECOVERY_S}s).`,
    'target/s is the mean offered rate of the phase; achieved below it and nothing dropped means k6 itself fell behind.',
    '',
    row(['phase', 'target/s', 'achieved/s', 'dropped', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'failed %'], w),
  ];
  for (const phase of ['base', 'spike', 'settle', 'recovery']) {
    const st = stats(data, 'phase', phase, secs[phase], phase);
    lines.push(row([phase, target[phase], num(st.achieved, 0), st.dropped, num(st.p50, 2), num(st.p95, 2), num(st.p99, 2), num(st.max, 1),
      num(st.failed === undefined ? undefined : st.failed * 100, 3)], w));
  }
  const b503 = data.metrics.beacon_503;
  lines.push('');
  lines.push(`503 answers over the whole run: ${b503 ? b503.values.count : 0} (each must carry Retry-After: see the checks).`);
  return lines;
}

function thresholdLines(data) {
  const lines = [];
  let failed = 0;
  for (const name of Object.keys(data.metrics).sort()) {
    const m = data.metrics[name];
    if (!m.thresholds) continue;
    for (const t of Object.keys(m.thresholds)) {
      if (t === 'max>=0' || t === 'rate>=0' || t === 'count>=0') continue;
      const ok = m.thresholds[t].ok;
      if (!ok) failed++;
      const v = m.values;
      let shown = '';
      const q = t.match(/^(p\(\d+(?:\.\d+)?\)|avg|med|max|min|rate|count)/);
      if (q && v[q[1]] !== undefined) shown = `${q[1]}=${num(v[q[1]], q[1] === 'rate' ? 5 : 2)}`;
      lines.push(`  ${ok ? 'ok  ' : 'FAIL'} ${name}: ${t}   (${shown})`);
    }
  }
  return { lines, failed };
}

export function handleSummary(data) {
  const out = ['', `ramp-spike against ${env('BASE_URL', 'http://127.0.0.1:8080')}`, ''];
  if (PHASES.includes('knee')) out.push(...kneeTable(data), '');
  if (PHASES.includes('spike')) out.push(...spikeTable(data), '');
  const reqs = data.metrics.http_reqs;
  const checks = data.metrics.checks;
  out.push(`Requests: ${reqs ? reqs.values.count : 0} (${reqs ? num(reqs.values.rate, 1) : 0}/s over the whole run); checks: ${checks ? checks.values.passes : 0} passed, ${checks ? checks.values.fails : 0} failed.`);
  const t = thresholdLines(data);
  out.push(`Thresholds (${t.failed} failed):`, ...t.lines, '');
  const result = { stdout: out.join('\n') + '\n' };
  const json = env('SUMMARY_JSON', '');
  if (json) result[json] = JSON.stringify(data, null, 2);
  return result;
}
