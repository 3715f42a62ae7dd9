// Harness for tokenhandler's browser tests: finds the parts (Chromium, the Dex binary,
// Go), builds tokenhandler and examples/stack, starts the stack on free loopback ports,
// launches Debian's Chromium through playwright-core, signs in at Dex, reads Prometheus
// metrics, and saves screenshots; browserSuite and makeStepper give every test file the
// same skip-or-fail rule and the same step-by-step failure handling. Test-only
// environment variables never use the TH_ prefix.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..', '..');
export const artifacts = path.join(here, 'artifacts');
export const inCI = process.env.CI === 'true';

export const CHROMIUM = process.env.TOKENHANDLER_TEST_CHROMIUM || '/usr/bin/chromium';

// The launch the project's DEVELOPERS notes prescribe for Debian's Chromium.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function executable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function onPath(cmd) {
  return (process.env.PATH || '').split(path.delimiter).some((d) => d && executable(path.join(d, cmd)));
}

// missingParts lists what the tests need and do not have, each with how to provide it.
export function missingParts() {
  const missing = [];
  if (!executable(CHROMIUM)) {
    missing.push(`Chromium (${CHROMIUM}): apt-get install chromium`);
  }
  const dex = process.env.TOKENHANDLER_TEST_DEX;
  if (!dex) {
    missing.push('the Dex binary: export TOKENHANDLER_TEST_DEX="$(scripts/idp-bin.sh dex)" (e2e/browser/run.sh does)');
  } else if (!executable(dex)) {
    missing.push(`the Dex binary: TOKENHANDLER_TEST_DEX=${dex} is not an executable file`);
  }
  if (!onPath('go')) {
    missing.push('Go: install Go 1.26');
  }
  return missing;
}

// buildBinaries builds tokenhandler and the stack into dir. TOKENHANDLER_TEST_BIN, when
// set, is a tokenhandler binary to use instead of building one.
export function buildBinaries(dir) {
  const th = process.env.TOKENHANDLER_TEST_BIN || path.join(dir, 'tokenhandler');
  const stack = path.join(dir, 'stack');
  const opts = { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], timeout: 10 * 60 * 1000 };
  if (!process.env.TOKENHANDLER_TEST_BIN) execFileSync('go', ['build', '-o', th, './cmd/tokenhandler'], opts);
  execFileSync('go', ['build', '-o', stack, './examples/stack'], opts);
  return { th, stack };
}

// startStack runs examples/stack with free ports and the given access-token TTL, and
// resolves with its -json line once everything is ready. Its logs are kept under
// artifacts/ as LABEL.stderr.log and LABEL-logs/, one set per test file.
export async function startStack({ stackBin, thBin, tokenTTL = '5s', label = 'stack' }) {
  fs.mkdirSync(artifacts, { recursive: true });
  const log = fs.createWriteStream(path.join(artifacts, `${label}.stderr.log`));
  const child = spawn(stackBin, [
    '-ports=auto', '-json', `-token-ttl=${tokenTTL}`, '-keep-logs',
    '-root', root, '-dex', process.env.TOKENHANDLER_TEST_DEX, '-tokenhandler', thBin,
  ], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.pipe(log);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const lines = readline.createInterface({ input: child.stdout });
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the stack was not ready within 3 minutes')), 3 * 60 * 1000);
    lines.on('line', (line) => {
      try {
        const v = JSON.parse(line);
        clearTimeout(timer);
        resolve(v);
      } catch { /* not the JSON line */ }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the stack exited before it was ready (code ${code}, signal ${signal}); see artifacts/${label}.stderr.log`));
    });
  });
  return {
    info,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
      }
      // Keep the components' logs with the other artifacts.
      if (info.log_dir && fs.existsSync(info.log_dir)) {
        const dst = path.join(artifacts, `${label}-logs`);
        fs.rmSync(dst, { recursive: true, force: true });
        fs.cpSync(info.log_dir, dst, { recursive: true });
        fs.rmSync(info.log_dir, { recursive: true, force: true });
      }
      log.end();
    },
  };
}

// launchBrowser starts Chromium with a fresh, empty profile.
export async function launchBrowser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenhandler-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1100, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

// metric returns the value of the Prometheus series name{labels} at url (0 when absent).
export async function metric(url, name, labels = {}) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  const text = await res.text();
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = {};
    for (const [, k, v] of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[k] = v;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) total += Number(m[3]);
  }
  return total;
}

// refreshCounts reads the two counters that tell how many refreshes happened: the
// agent's successful refreshes and the refresh_token calls the token endpoint answered 200.
export async function refreshCounts(metricsURL) {
  return {
    refreshes: await metric(metricsURL, 'tokenhandler_refreshes_total', { outcome: 'success' }),
    tokenCalls: await metric(metricsURL, 'tokenhandler_token_endpoint_requests_total', { grant_type: 'refresh_token', status: '200' }),
  };
}

// screenshotAll saves a full-page screenshot of every open page under artifacts/.
export async function screenshotAll(context, label) {
  fs.mkdirSync(artifacts, { recursive: true });
  const safe = label.replace(/[^a-zA-Z0-9_-]+/g, '-').replace(/^-|-$/g, '');
  const saved = [];
  for (const [i, page] of context.pages().entries()) {
    const file = path.join(artifacts, `${safe}-tab${i + 1}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true, timeout: 10_000 });
      saved.push(file);
    } catch (err) {
      console.error(`screenshot of tab ${i + 1} failed: ${err.message}`);
    }
  }
  return saved;
}

// sleepUntil waits until the wall clock passes t (ms since the epoch).
export function sleepUntil(t) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, t - Date.now())));
}

// browserSuite runs fn as a describe block when every part the browser tests need is
// there; otherwise it fails (CI=true) or skips with the reason.
export function browserSuite(name, fn) {
  const missing = missingParts();
  if (missing.length > 0 && inCI) {
    test(`${name}: the browser tests have what they need`, () => {
      assert.fail(`missing under CI=true (a failure, not a skip):\n  ${missing.join('\n  ')}`);
    });
  } else if (missing.length > 0) {
    const reason = `missing: ${missing.join('; ')}`;
    console.log(`browser tests skipped, ${reason}`);
    describe(name, { skip: reason }, () => {
      test('skipped', () => {});
    });
  } else {
    describe(name, { concurrency: 1 }, fn);
  }
}

// makeStepper returns step(name, fn): one test whose failure screenshots every tab of
// the browser getBrowser() returns and skips the later steps, which build on it.
export function makeStepper(getBrowser, timeout = 3 * 60 * 1000) {
  const state = { failed: false };
  const step = (name, fn) => test(name, { timeout }, async (t) => {
    if (state.failed) {
      t.skip('an earlier step failed');
      return;
    }
    try {
      await fn(t);
    } catch (err) {
      state.failed = true;
      const browser = getBrowser();
      if (browser) {
        const shots = await screenshotAll(browser.context, `failed-${name}`);
        t.diagnostic(`screenshots: ${shots.map((s) => path.relative(root, s)).join(', ')}`);
      }
      throw err;
    }
  });
  return { step, state };
}

// signIn signs in from the SPA's Sign-in button through Dex's own login form and waits
// until the SPA, back at /, shows the user signed in.
export async function signIn(page, info) {
  await page.goto(`${info.url}/`);
  await page.locator('#status[data-state="signed-out"]').waitFor();
  await page.click('#signin');
  await page.locator('input[name="login"]').waitFor({ timeout: 30_000 });
  assert.ok(page.url().startsWith(`${info.issuer}/`), `login page at ${page.url()}, want under ${info.issuer}`);
  await page.fill('input[name="login"]', info.username);
  await page.fill('input[name="password"]', info.password);
  await Promise.all([
    page.waitForURL(`${info.url}/`, { timeout: 30_000 }),
    page.click('#submit-login'),
  ]);
  await page.locator('#status[data-state="signed-in"]').waitFor({ timeout: 15_000 });
}
