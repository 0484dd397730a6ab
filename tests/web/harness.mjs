// Starts a Tverr demo server and headless Chromium for the web tests, and runs axe-core.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, homedir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

export const bin = process.env.TVERR_BIN
  ?? join(process.env.CARGO_TARGET_DIR ?? join(homedir(), '.cache', 'tverr-target'), 'debug', 'tverr');

/** Where screenshots go (not committed). */
export const shots = process.env.TVERR_SCREENSHOTS ?? join(process.cwd(), 'screenshots');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

/** A demo municipality served on loopback; `stop()` ends it and removes its data. */
export async function startServer(extraArgs = [], env = {}, persons = 300) {
  const dir = mkdtempSync(join(tmpdir(), 'tverr-web-'));
  const data = join(dir, 'data');
  const allEnv = { ...process.env, TVERR_DATA: data, ...env };
  execFileSync(bin, ['demo', '--persons', String(persons)], { env: allEnv, stdio: 'ignore' });
  const port = await freePort();
  const proc = spawn(bin, ['serve', '--demo', '--listen', `127.0.0.1:${port}`, ...extraArgs], { env: allEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${url}/health`)).ok) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  const cli = (...args) => execFileSync(bin, args, { env: allEnv, encoding: 'utf8' }).trim();
  return {
    url, dir, cli, log: () => log,
    stop: () => { proc.kill('SIGINT'); rmSync(dir, { recursive: true, force: true }); },
  };
}

export async function startBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

/** axe-core's WCAG 2.1 A and AA rules on the page as it is; returns the violations. */
export async function axe(page) {
  const r = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  return r.violations.map((v) => `${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
}

/** A full-page screenshot at desktop and phone widths, named after the page. */
export async function screenshots(page, name) {
  mkdirSync(shots, { recursive: true });
  const size = page.viewportSize();
  for (const [label, vp] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewportSize(vp);
    await page.screenshot({ path: join(shots, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize(size);
}

/** Logs in through the form as a local user. */
export async function login(page, url, username, password = 'hamar-demo-2026') {
  await page.goto(`${url}/logg-inn`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await Promise.all([page.waitForNavigation(), page.click('form[action="/logg-inn"] button[type=submit]')]);
}

/** Words that only a page in the other language would show. A page's own words come from the
 * message table; text in another language on purpose (the catalogue's bokmål titles on an English
 * page, the language switch) carries its own `lang` attribute and is not scanned. */
const FOREIGN = {
  nb: /(?<![\p{L}\p{N}])(the|and|is|are|not|does|must|cannot|could|invalid|error|please|was|were|with|which|this|that|your|you|from|missing|expected|found|unknown|allowed|only|line|column)(?![\p{L}\p{N}])/iu,
  en: /(?<![\p{L}\p{N}])(og|ikke|er|som|med|eller|til|av|kan|skal|må|har|denne|dette|din|ditt|ingen|fra|mangler|ugyldig|feil|på)(?![\p{L}\p{N}])/u,
};

/** What a page shows that a reader of `lang` should not see: words of the other language, raw
 * ISO timestamps and dates, WKT, and (in bokmål) decimal points in numbers. Returns the problems. */
export async function readable(page, lang) {
  const texts = await page.evaluate((lang) => {
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || el.closest('script,style,code,pre,kbd,samp,[hidden]')) continue;
      const tagged = el.closest('[lang]');
      const other = !!tagged && tagged !== document.documentElement && tagged.getAttribute('lang') !== lang;
      const style = getComputedStyle(el);
      if (style.display === 'none' || style.visibility === 'hidden') continue;
      const t = n.textContent.replace(/\s+/g, ' ').trim();
      if (t) out.push([t, other]);
    }
    for (const el of document.querySelectorAll('[aria-label],[title],[alt],[placeholder]')) {
      const tagged = el.closest('[lang]');
      const other = !!tagged && tagged !== document.documentElement && tagged.getAttribute('lang') !== lang;
      for (const a of ['aria-label', 'title', 'alt', 'placeholder']) if (el.getAttribute(a)) out.push([el.getAttribute(a), other]);
    }
    return out;
  }, lang);
  const problems = [];
  for (const [shown, other] of texts) {
    // A web address is neither a date nor a number, whatever digits it holds.
    const t = shown.replace(/\bhttps?:\/\/\S+/g, '');
    // Text marked as another language (the catalogue's bokmål on an English page) is not
    // scanned for words, but its numbers and dates are still the page's.
    const w = other ? null : t.match(FOREIGN[lang]);
    if (w) problems.push(`other language («${w[0]}»): ${t.slice(0, 120)}`);
    if (/\d{4}-\d{2}-\d{2}/.test(t)) problems.push(`ISO date: ${t.slice(0, 120)}`);
    if (/\b(POINT|LINESTRING|POLYGON|MULTIPOINT|MULTILINESTRING|MULTIPOLYGON|GEOMETRYCOLLECTION)\s*Z?\s*\(/i.test(t)) {
      problems.push(`WKT: ${t.slice(0, 120)}`);
    }
    if (lang === 'nb') {
      // Dates (06.12.2026), times of day (kl. 14.30, 08.00–15.30) and licence versions are not
      // decimals.
      const plain = t.replace(/\b\d{1,2}\.\d{1,2}\.\d{4}\b/g, '')
        .replace(/\b([01]\d|2[0-3])\.[0-5]\d\b/g, '')
        // Versions of licences and standards (NLOD 2.0, OpenAPI 3.0) are not decimals either.
        .replace(/\b(NLOD|CC BY(-SA)?|CC0|ODbL|PDDL|ODC-By|OpenAPI)\s*\d+(\.\d+)*/g, '');
      if (/\d\.\d/.test(plain)) problems.push(`decimal point: ${t.slice(0, 120)}`);
    }
  }
  return problems;
}
