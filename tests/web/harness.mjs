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
