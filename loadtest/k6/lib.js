// Shared pieces of Sluice's k6 scripts: configuration from the environment,
// browser-like visitors and events, one sender per request kind (each tags its
// request with `kind` and checks the answer), scenario sizing and thresholds.
//
// Request kinds (the `kind` tag on every request, check and custom metric):
//   single    one event, what navigator.sendBeacon(url, string) sends: text/plain;charset=UTF-8
//             (variant "beacon"), or fetch(keepalive) with application/json (variant "fetch")
//   batch     an SDK batch: a JSON array of BATCH_MIN..BATCH_MAX events, application/json
//   gzip      the same, Content-Encoding: gzip (k6 compresses it: params.compression)
//   ndjson    NDJSON_MIN..NDJSON_MAX events, one per line, application/x-ndjson
//   pixel     GET /v1/pixel.gif: plain query parameters (variant "query"), ?e=<URL-encoded JSON>
//             ("json") or ?e=<base64url JSON> ("b64")
//   preflight an OPTIONS CORS preflight, what a browser sends before a cross-origin JSON POST

import http from 'k6/http';
import { check } from 'k6';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

// ---------------------------------------------------------------- configuration

export function env(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : v;
}

export function envNum(name, def) {
  const v = env(name, undefined);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name}=${JSON.stringify(v)} is not a number`);
  return n;
}

// parseDuration reads a k6-style duration ("90s", "1m30s", "500ms", "2h") or a
// plain number of seconds, and returns seconds.
export function parseDuration(s) {
  if (typeof s === 'number') return s;
  const str = String(s).trim();
  if (/^\d+(\.\d+)?$/.test(str)) return Number(str);
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  let m;
  while ((m = re.exec(str)) !== null) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 's' ? n : n / 1000;
    consumed += m[0].length;
  }
  if (consumed !== str.length || consumed === 0) throw new Error(`not a duration: ${JSON.stringify(s)}`);
  return total;
}

export const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const BEACON_URL = `${BASE_URL}/v1/beacon`;
export const PIXEL_URL = `${BASE_URL}/v1/pixel.gif`;
const REQ_TIMEOUT = env('REQ_TIMEOUT', '10s');
const WRITE_KEY = env('WRITE_KEY', '');
const BATCH_MIN = envNum('BATCH_MIN', 10);
const BATCH_MAX = envNum('BATCH_MAX', 50);
const NDJSON_MIN = envNum('NDJSON_MIN', 5);
const NDJSON_MAX = envNum('NDJSON_MAX', 30);

export const KINDS = ['single', 'batch', 'gzip', 'ndjson', 'pixel', 'preflight'];

// Latency thresholds (ms) per kind when neither P95_MS_<KIND> nor P95_MS is set.
// Local runs on a small shared machine; a remote target adds its round trip.
const DEFAULT_MS = {
  single: { p95: 50, p99: 150 },
  pixel: { p95: 50, p99: 150 },
  preflight: { p95: 50, p99: 150 },
  batch: { p95: 100, p99: 300 },
  gzip: { p95: 100, p99: 300 },
  ndjson: { p95: 100, p99: 300 },
};

// ---------------------------------------------------------------- randomness

export function rand(n) {
  return Math.floor(Math.random() * n);
}
export function between(lo, hi) {
  return lo + rand(hi - lo + 1);
}
export function pick(arr) {
  return arr[rand(arr.length)];
}
// pickWeighted picks from [[value, weight], ...]. Indexed loops, not for-of:
// k6's JavaScript engine runs for-of through the iterator protocol, which costs
// an allocation per step, and these run for every event.
export function pickWeighted(pairs) {
  let total = pairs.total;
  if (total === undefined) {
    total = 0;
    for (let i = 0; i < pairs.length; i++) total += pairs[i][1];
    pairs.total = total; // cached on the array
  }
  let r = Math.random() * total;
  for (let i = 0; i < pairs.length; i++) {
    r -= pairs[i][1];
    if (r < 0) return pairs[i][0];
  }
  return pairs[pairs.length - 1][0];
}

function uuid() {
  if (typeof crypto !== 'undefined' && crypto.randomUUID) return crypto.randomUUID();
  const h = '0123456789abcdef';
  let s = '';
  for (let i = 0; i < 36; i++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) s += '-';
    else if (i === 14) s += '4';
    else if (i === 19) s += h[8 + rand(4)];
    else s += h[rand(16)];
  }
  return s;
}

// ---------------------------------------------------------------- visitors

// Browsers, roughly by share. Pixels and beacons carry these.
const BROWSER_UAS = [
  ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36', 30],
  ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36', 10],
  ['Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36', 18],
  ['Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1', 17],
  ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Safari/605.1.15', 6],
  ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36 Edg/142.0.0.0', 6],
  ['Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:145.0) Gecko/20100101 Firefox/145.0', 5],
  ['Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/28.0 Chrome/130.0.0.0 Mobile Safari/537.36', 4],
  ['Mozilla/5.0 (iPad; CPU OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/142.0.7444.46 Mobile/15E148 Safari/604.1', 2],
  ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36', 2],
];

// Apps and servers that send SDK batches without a browser (no Origin).
const SDK_UAS = [
  ['ShopApp/5.12.0 (iPhone; iOS 18.6; Scale/3.00) analytics-ios/4.1.8', 4],
  ['okhttp/4.12.0', 4],
  ['analytics-node/2.1.3 (node.js v22.11.0)', 1],
  ['analytics-python/2.3.3', 1],
];

const SITES = [
  {
    origin: 'https://www.shop.example',
    pages: [
      ['/', 'Shop – Home'],
      ['/c/shoes', 'Shoes | Shop'],
      ['/c/jackets', 'Jackets | Shop'],
      ['/p/trail-runner-2', 'Trail Runner 2 – Shop'],
      ['/p/down-jacket-x', 'Down Jacket X – Shop'],
      ['/cart', 'Your cart'],
      ['/checkout', 'Checkout'],
      ['/search', 'Search results'],
    ],
  },
  {
    origin: 'https://blog.example.org',
    pages: [
      ['/', 'The Blog'],
      ['/2026/11/why-wal', 'Why a write-ahead log?'],
      ['/2026/10/cafe-creme', 'Café crème – Menü & Rezepte'],
      ['/2026/09/tokyo', '東京の旅 — a week in Tokyo'],
      ['/about', 'About us'],
    ],
  },
  {
    origin: 'https://app.example.io',
    pages: [
      ['/dashboard', 'Dashboard'],
      ['/projects/42', 'Project 42 · Settings'],
      ['/reports?range=30d', 'Reports 📈'],
      ['/billing', 'Billing'],
    ],
  },
];

const REFERRERS = [
  ['', 40],
  ['https://www.google.com/', 30],
  ['https://www.bing.com/', 4],
  ['https://duckduckgo.com/', 3],
  ['https://t.co/', 4],
  ['https://www.facebook.com/', 4],
  ['https://news.ycombinator.com/', 2],
  ['android-app://com.google.android.gm/', 2],
];

const LOCALES = ['en-US', 'en-GB', 'de-DE', 'fr-FR', 'ja-JP', 'pt-BR', 'es-ES', 'nl-NL'];
const TIMEZONES = ['America/New_York', 'Europe/Berlin', 'Europe/London', 'Asia/Tokyo', 'America/Sao_Paulo', 'America/Los_Angeles'];
const SCREENS = [
  [1920, 1080, 1], [1536, 864, 1.25], [1440, 900, 2], [2560, 1440, 1], [390, 844, 3], [412, 915, 2.625], [820, 1180, 2],
];

// A visitor is one browser session: kept by a VU for a few requests, then replaced.
function newVisitor() {
  const site = pick(SITES);
  const loggedIn = Math.random() < 0.3;
  const scr = pick(SCREENS);
  return {
    anonymousId: uuid(),
    // user ids are strings mostly, sometimes numbers (Sluice takes both)
    userId: loggedIn ? (Math.random() < 0.8 ? `u_${between(1, 5000000)}` : between(1, 5000000)) : undefined,
    ua: pickWeighted(BROWSER_UAS),
    site,
    page: pick(site.pages),
    referrer: pickWeighted(REFERRERS),
    locale: pick(LOCALES),
    timezone: pick(TIMEZONES),
    screen: { width: scr[0], height: scr[1], density: scr[2] },
    // 15 % of visits come from a campaign link
    campaign: Math.random() < 0.15 ? { source: pick(['newsletter', 'google', 'facebook']), medium: pick(['email', 'cpc', 'social']), name: 'winter_sale' } : undefined,
    left: between(5, 30),
  };
}

let current = null;

// session returns this VU's current visitor, moving it to another page now and then.
export function session() {
  if (current === null || current.left <= 0) current = newVisitor();
  current.left--;
  if (Math.random() < 0.3) {
    current.referrer = current.site.origin + current.page[0];
    current.page = pick(current.site.pages);
  }
  return current;
}

function pageURL(v) {
  return v.site.origin + v.page[0];
}

// ---------------------------------------------------------------- events

const EVENT_TYPES = [
  ['page_view', 45], ['click', 20], ['scroll_depth', 10], ['product_view', 10], ['add_to_cart', 6],
  ['form_submit', 4], ['checkout_started', 3], ['purchase', 1], ['identify', 1],
];

// Segment-style names for the same actions (SDK batches use them).
const SEGMENT_NAMES = {
  click: 'Element Clicked', scroll_depth: 'Scroll Depth Reached', product_view: 'Product Viewed',
  add_to_cart: 'Product Added', form_submit: 'Form Submitted', checkout_started: 'Checkout Started',
  purchase: 'Order Completed',
};

const PRODUCTS = [
  ['sku-1001', 'Trail Runner 2', 129.9, 'shoes'],
  ['sku-1002', 'Down Jacket X', 249.0, 'jackets'],
  ['sku-1003', 'Merino Socks (3 pack)', 24.5, 'accessories'],
  ['sku-1004', 'Rain Shell Pro', 189.0, 'jackets'],
  ['sku-1005', 'Café Mug – Édition limitée', 14.0, 'home'],
];

function product() {
  const p = pick(PRODUCTS);
  return { product_id: p[0], sku: p[0], name: p[1], price: p[2], category: p[3], currency: 'EUR' };
}

function properties(v, type) {
  switch (type) {
    case 'page_view':
      return { path: v.page[0], title: v.page[1], url: pageURL(v), referrer: v.referrer, load_ms: between(180, 4200) };
    case 'click':
      return { element: pick(['button#buy', 'a.nav-link', 'button.add-to-cart', 'a.footer-link', 'div.card']), text: pick(['Buy now', 'Next', 'Jetzt kaufen', 'Read more', '詳細']), x: rand(v.screen.width), y: rand(v.screen.height) };
    case 'scroll_depth':
      return { percent: pick([25, 50, 75, 100]), path: v.page[0] };
    case 'product_view':
      return product();
    case 'add_to_cart':
      return Object.assign(product(), { quantity: between(1, 3), cart_id: `c_${rand(1e6)}` });
    case 'form_submit':
      return { form_id: pick(['newsletter', 'contact', 'login', 'signup']), fields: between(1, 8), valid: Math.random() < 0.95 };
    case 'checkout_started':
      return { cart_id: `c_${rand(1e6)}`, value: Math.round(Math.random() * 50000) / 100, currency: 'EUR', items: between(1, 5) };
    case 'purchase': {
      const items = [];
      for (let i = between(1, 4); i > 0; i--) items.push(Object.assign(product(), { quantity: between(1, 2) }));
      let revenue = 0;
      for (let i = 0; i < items.length; i++) revenue += items[i].price * items[i].quantity;
      return { order_id: `o_${uuid().slice(0, 8)}`, revenue: Math.round(revenue * 100) / 100, currency: 'EUR', products: items, coupon: Math.random() < 0.2 ? 'WINTER10' : null };
    }
    case 'identify':
      return { plan: pick(['free', 'pro', 'team']), signup_source: pick(['organic', 'ads', 'referral']) };
    default:
      return {};
  }
}

// context is what an SDK knows about the page and the browser. It changes only
// with the page, so it is built once per page view and shared by that page's
// events (fewer allocations in k6: the generator must stay cheap).
function context(v, sdk) {
  const key = sdk ? 'sdkCtx' : 'ctx';
  if (v[key] && v[key].page.url === pageURL(v) && v[key].page.referrer === v.referrer) return v[key];
  const path = v.page[0];
  const q = path.indexOf('?');
  const ctx = {
    page: { url: pageURL(v), path: q < 0 ? path : path.slice(0, q), title: v.page[1], referrer: v.referrer, search: q < 0 ? '' : path.slice(q) },
    locale: v.locale,
    timezone: v.timezone,
    screen: v.screen,
    library: sdk ? { name: 'analytics.js', version: 'next-1.84.3' } : { name: 'sluice-snippet', version: '1.4.2' },
  };
  if (sdk) ctx.userAgent = v.ua;
  if (v.campaign) ctx.campaign = v.campaign;
  v[key] = ctx;
  return ctx;
}

// event builds one snake_case event, as a first-party snippet would send it.
export function event(v, sentAt) {
  const type = pickWeighted(EVENT_TYPES);
  const ev = {
    type,
    message_id: uuid(),
    anonymous_id: v.anonymousId,
    sent_at: sentAt || new Date().toISOString(),
    properties: properties(v, type),
    context: context(v, false),
  };
  if (v.userId !== undefined) ev.user_id = v.userId;
  return ev;
}

// sdkEvent builds one Segment-style event (camelCase, `event` for the name),
// as analytics SDKs batch them; `timestamp` is when it happened, `sentAt` when
// the batch left.
export function sdkEvent(v, sentAt, at) {
  const t = pickWeighted(EVENT_TYPES);
  const ev = {
    messageId: uuid(),
    anonymousId: v.anonymousId,
    timestamp: new Date(at).toISOString(),
    sentAt,
    context: context(v, true),
  };
  if (t === 'page_view') {
    ev.type = 'page';
    ev.name = v.page[1];
    ev.properties = properties(v, 'page_view');
  } else if (t === 'identify') {
    ev.type = 'identify';
    ev.traits = properties(v, 'identify');
  } else {
    ev.type = 'track';
    ev.event = SEGMENT_NAMES[t];
    ev.properties = properties(v, t);
  }
  if (v.userId !== undefined) ev.userId = v.userId;
  return ev;
}

function sdkBatch(v, lo, hi) {
  const n = between(lo, hi);
  const sentAt = new Date().toISOString();
  const events = new Array(n);
  let at = Date.now() - n * 1500;
  for (let i = 0; i < n; i++) {
    at += between(200, 2800);
    events[i] = sdkEvent(v, sentAt, at);
  }
  return events;
}

// ---------------------------------------------------------------- metrics and checks

// Events in requests Sluice accepted (2xx), by kind: events/s next to req/s.
export const eventsAccepted = new Counter('beacon_events_accepted');
// 503 answers (overloaded or shutting down), by kind.
export const overloaded = new Counter('beacon_503');

function corsOK(res, origin) {
  return !origin || res.headers['Access-Control-Allow-Origin'] === origin;
}

function checkBeacon(res, kind, n, origin) {
  const tags = { kind };
  const counts = res.status === 200 ? answerCounts(res) : null;
  check(res, {
    'beacon accepted (204/200)': (r) => r.status === 204 || r.status === 200,
    // a 200 carries {"accepted":n,"invalid":m}: m of our (valid) events were dead-lettered
    'beacon: no event dead-lettered': () => counts === null || counts.invalid === 0,
    'beacon: CORS origin echoed': (r) => corsOK(r, origin),
  }, tags);
  after(res, kind, counts === null ? n : counts.accepted);
}

function answerCounts(r) {
  try {
    const c = JSON.parse(r.body);
    return { accepted: Number(c.accepted) || 0, invalid: Number(c.invalid) };
  } catch (e) {
    return { accepted: 0, invalid: NaN };
  }
}

function after(res, kind, n) {
  if (res.status >= 200 && res.status < 300) eventsAccepted.add(n, { kind });
  if (res.status === 503) {
    overloaded.add(1, { kind });
    check(res, { '503 carries Retry-After': (r) => !!r.headers['Retry-After'] }, { kind });
  }
}

// ---------------------------------------------------------------- senders

function postHeaders(v, contentType, browser) {
  const h = { 'Content-Type': contentType };
  if (browser) {
    h['User-Agent'] = v.ua;
    h.Origin = v.site.origin;
    h.Referer = pageURL(v);
    h['Accept-Language'] = `${v.locale},en;q=0.8`;
  } else {
    h['User-Agent'] = pickWeighted(SDK_UAS);
  }
  if (WRITE_KEY) h.Authorization = `Basic ${encoding.b64encode(`${WRITE_KEY}:`)}`;
  return h;
}

function post(kind, variant, body, headers, n, extra) {
  const params = Object.assign({ headers, tags: { kind, variant }, timeout: REQ_TIMEOUT }, extra || {});
  const res = http.post(BEACON_URL, body, params);
  checkBeacon(res, kind, n, headers.Origin);
  return res;
}

// sendSingle: one event; 80 % navigator.sendBeacon(url, JSON string) (text/plain,
// no preflight), 20 % fetch(url, {keepalive: true}) with application/json.
export function sendSingle(v) {
  const ev = event(v);
  if (Math.random() < 0.8) {
    return post('single', 'beacon', JSON.stringify(ev), postHeaders(v, 'text/plain;charset=UTF-8', true), 1);
  }
  return post('single', 'fetch', JSON.stringify(ev), postHeaders(v, 'application/json', true), 1);
}

// sendBatch: an SDK batch, a JSON array; half from browsers (with Origin), half from apps.
export function sendBatch(v) {
  const events = sdkBatch(v, BATCH_MIN, BATCH_MAX);
  const browser = Math.random() < 0.5;
  return post('batch', browser ? 'browser' : 'app', JSON.stringify(events), postHeaders(v, 'application/json', browser), events.length);
}

// sendGzip: the same batch, gzip-compressed by k6 (Content-Encoding: gzip).
export function sendGzip(v) {
  const events = sdkBatch(v, BATCH_MIN, BATCH_MAX);
  const browser = Math.random() < 0.5;
  return post('gzip', browser ? 'browser' : 'app', JSON.stringify(events), postHeaders(v, 'application/json', browser), events.length, { compression: 'gzip' });
}

// sendNdjson: events one per line (a server-side forwarder's or a log shipper's batch).
export function sendNdjson(v) {
  const n = between(NDJSON_MIN, NDJSON_MAX);
  const sentAt = new Date().toISOString();
  const lines = new Array(n);
  for (let i = 0; i < n; i++) lines[i] = JSON.stringify(event(v, sentAt));
  return post('ndjson', 'lines', lines.join('\n') + '\n', postHeaders(v, 'application/x-ndjson', false), n);
}

const PIXEL_VARIANTS = [['query', 50], ['json', 25], ['b64', 25]];

// sendPixel: GET /v1/pixel.gif as an <img> sends it: no Origin, a Referer, cookies
// would go along; the event in plain query parameters, or whole in ?e= (URL-encoded
// JSON or base64url JSON).
export function sendPixel(v) {
  const variant = pickWeighted(PIXEL_VARIANTS);
  let q;
  if (variant === 'query') {
    const p = {
      type: Math.random() < 0.7 ? 'page_view' : 'impression',
      anonymous_id: v.anonymousId,
      url: pageURL(v),
      title: v.page[1],
      ref: v.referrer,
      sw: String(v.screen.width),
      sh: String(v.screen.height),
      lang: v.locale,
      sent_at: new Date().toISOString(),
      cb: String(rand(1e9)), // cache buster
    };
    if (v.userId !== undefined) p.user_id = String(v.userId);
    q = Object.keys(p).map((k) => `${k}=${encodeURIComponent(p[k])}`).join('&');
  } else {
    const ev = {
      type: Math.random() < 0.7 ? 'page_view' : 'impression',
      anonymous_id: v.anonymousId,
      sent_at: new Date().toISOString(),
      properties: { title: v.page[1], load_ms: between(180, 4200) },
      context: { page: { url: pageURL(v), referrer: v.referrer }, locale: v.locale },
    };
    if (v.userId !== undefined) ev.user_id = v.userId;
    const json = JSON.stringify(ev);
    q = `e=${variant === 'json' ? encodeURIComponent(json) : encoding.b64encode(json, 'rawurl')}&cb=${rand(1e9)}`;
  }
  const headers = { 'User-Agent': v.ua, Referer: pageURL(v), Accept: 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8' };
  const res = http.get(`${PIXEL_URL}?${q}`, { headers, tags: { kind: 'pixel', variant }, timeout: REQ_TIMEOUT });
  check(res, {
    'pixel: status 200': (r) => r.status === 200,
    'pixel: content-type image/gif': (r) => (r.headers['Content-Type'] || '').split(';')[0].trim() === 'image/gif',
    'pixel: body is a GIF': (r) => typeof r.body === 'string' && r.body.startsWith('GIF89a'),
    'pixel: not cacheable': (r) => /no-store|no-cache/.test(r.headers['Cache-Control'] || ''),
  }, { kind: 'pixel' });
  after(res, 'pixel', 1);
  return res;
}

// sendPreflight: the OPTIONS a browser sends before a cross-origin JSON POST.
export function sendPreflight(v) {
  const headers = {
    Origin: v.site.origin,
    'Access-Control-Request-Method': 'POST',
    'Access-Control-Request-Headers': pick(['content-type', 'authorization,content-type', 'anonymousid,content-type,sentat']),
    'User-Agent': v.ua,
    Referer: pageURL(v),
  };
  const res = http.options(BEACON_URL, null, { headers, tags: { kind: 'preflight', variant: 'cors' }, timeout: REQ_TIMEOUT });
  check(res, {
    'preflight: status 204/200': (r) => r.status === 204 || r.status === 200,
    'preflight: origin echoed': (r) => r.headers['Access-Control-Allow-Origin'] === headers.Origin,
    'preflight: POST allowed': (r) => /\bPOST\b/.test(r.headers['Access-Control-Allow-Methods'] || ''),
    'preflight: requested headers allowed': (r) => {
      const allowed = (r.headers['Access-Control-Allow-Headers'] || '').toLowerCase();
      return allowed === '*' ? false : headers['Access-Control-Request-Headers'].split(',').every((h) => allowed.includes(h));
    },
  }, { kind: 'preflight' });
  return res;
}

export const SENDERS = {
  single: sendSingle, batch: sendBatch, gzip: sendGzip, ndjson: sendNdjson, pixel: sendPixel, preflight: sendPreflight,
};

// The default browser mix, in percent of requests.
export const DEFAULT_MIX = 'single=45,batch=15,gzip=10,ndjson=5,pixel=23,preflight=2';

// parseMix reads "single=45,batch=15,..." into [[kind, weight], ...] (weights > 0 only).
export function parseMix(s) {
  const out = [];
  for (const part of String(s).split(',')) {
    const p = part.trim();
    if (!p) continue;
    const [k, w] = p.split('=');
    if (!SENDERS[k.trim()]) throw new Error(`MIX: unknown kind ${JSON.stringify(k)}; kinds: ${KINDS.join(', ')}`);
    const weight = w === undefined ? 1 : Number(w);
    if (!(weight >= 0)) throw new Error(`MIX: bad weight for ${k}: ${JSON.stringify(w)}`);
    if (weight > 0) out.push([k.trim(), weight]);
  }
  if (out.length === 0) throw new Error(`MIX ${JSON.stringify(s)} names no kind with a weight above 0`);
  return out;
}

export function sendMixed(mix) {
  return SENDERS[pickWeighted(mix)](session());
}

// ---------------------------------------------------------------- options

// vus sizes an arrival-rate scenario. An arrival-rate executor needs a free VU
// for every iteration it starts; when none is free it drops the iteration
// (dropped_iterations) and initializes another VU, which costs CPU mid-run. VUs
// are cheap (about 0.4 MB and 1.5 ms of CPU each), so: pre-allocate enough for
// 200 ms of latency at the given rate (1000 at most), and allow up to 1 s (5000 at most).
export function vus(rate) {
  return {
    preAllocatedVUs: envNum('PRE_VUS', Math.min(1000, Math.max(50, Math.ceil(rate / 5)))),
    maxVUs: envNum('MAX_VUS', Math.min(5000, Math.max(100, Math.ceil(rate)))),
  };
}

// limitMs is the latency threshold (ms) of one kind: P95_MS_<KIND> / P99_MS_<KIND>,
// else P95_MS / P99_MS, else DEFAULT_MS. q is 'p95' or 'p99'.
export function limitMs(kind, q) {
  const name = `${q.toUpperCase()}_MS`;
  return envNum(`${name}_${kind.toUpperCase()}`, envNum(name, DEFAULT_MS[kind][q]));
}

// thresholds: overall and per-kind limits on failures, latency and checks.
//   http_req_failed           < FAILED_RATE (0.001: 0.1 %) overall and per kind
//   http_req_duration         p(95) < P95_MS, p(99) < P99_MS overall and per kind
//                              (P95_MS_<KIND>, P99_MS_<KIND> set one kind)
//   checks                    rate >= CHECKS_RATE (0.999) overall and per kind
//   dropped_iterations        rate < DROPPED_RATE (1 % of `rate`), when a rate is given
export function thresholds(kinds, rate) {
  const failed = envNum('FAILED_RATE', 0.001);
  const checksRate = envNum('CHECKS_RATE', 0.999);
  let p95 = 0;
  let p99 = 0;
  for (const k of kinds) {
    p95 = Math.max(p95, limitMs(k, 'p95'));
    p99 = Math.max(p99, limitMs(k, 'p99'));
  }
  const t = {
    http_req_failed: [`rate<${failed}`],
    http_req_duration: [`p(95)<${envNum('P95_MS', p95)}`, `p(99)<${envNum('P99_MS', p99)}`],
    checks: [`rate>=${checksRate}`],
  };
  for (const k of kinds) {
    t[`http_req_failed{kind:${k}}`] = [`rate<${failed}`];
    t[`http_req_duration{kind:${k}}`] = [`p(95)<${limitMs(k, 'p95')}`, `p(99)<${limitMs(k, 'p99')}`];
    t[`checks{kind:${k}}`] = [`rate>=${checksRate}`];
    if (k !== 'preflight') t[`beacon_events_accepted{kind:${k}}`] = ['count>=0']; // shown in the summary
  }
  if (rate) t.dropped_iterations = [`rate<${envNum('DROPPED_RATE', rate * 0.01)}`];
  return t;
}

export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)'];

export function baseOptions(scenarios, th) {
  return {
    scenarios,
    thresholds: th,
    summaryTrendStats: SUMMARY_TREND_STATS,
    insecureSkipTLSVerify: env('INSECURE', '') === '1',
    // Sluice answers 204, 200 (counts or a pixel) or an error; the bodies are tiny.
    discardResponseBodies: false,
    setupTimeout: '30s',
  };
}

// probe runs in setup(): one preflight, so an unreachable or wrong BASE_URL
// stops the test at once instead of failing every request.
export function probe() {
  const res = http.options(BEACON_URL, null, { tags: { kind: 'setup' }, timeout: '5s' });
  if (res.error_code !== 0 || res.status === 0) {
    exec.test.abort(`${BEACON_URL} is unreachable: ${res.error}`);
  }
  if (res.status === 404) {
    exec.test.abort(`${BEACON_URL} answered 404: is BASE_URL (${BASE_URL}) a Sluice gateway?`);
  }
  return { baseURL: BASE_URL };
}
