// End-to-end tests of the web pages in headless Chromium, against a demo server started here.
// Each scenario of issue 7, the language switch on every page, axe-core's WCAG 2.1 A/AA rules
// on every page in both languages (logged in and out), and screenshots at desktop and phone
// widths (written to $TVERR_SCREENSHOTS or tests/web/screenshots, not committed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { startServer, startBrowser, login, axe, screenshots, readable } from './harness.mjs';

let server, browser;
const fixtures = join(import.meta.dirname, 'fixtures');
// Drop folders the demo server may read (TVERR_DROP_ROOTS).
const dropRoot = mkdtempSync(join(tmpdir(), 'tverr-drop-'));

before(async () => {
  server = await startServer([], { TVERR_DROP_ROOTS: dropRoot, TVERR_WEBHOOK_ALLOW: '127.0.0.0/8', TVERR_WEBHOOK_TICK_MS: '200' });
  browser = await startBrowser();
});

after(async () => {
  await browser?.close();
  server?.stop();
  rmSync(dropRoot, { recursive: true, force: true });
});

/** A fresh browser (no cookies). */
async function fresh() {
  const context = await browser.newContext();
  return context.newPage();
}

async function submit(page, selector) {
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
}

async function logout(page) {
  await submit(page, 'form[action="/logg-ut"] button');
}

/** axe in both languages and screenshots, for the page at `path` as it is for this browser. */
async function check(page, path, name) {
  for (const lang of ['nb', 'en']) {
    const sep = path.includes('?') ? '&' : '?';
    const r = await page.goto(`${server.url}${path}${sep}lang=${lang}`);
    assert.ok(r.status() < 400, `${path} (${lang}): ${r.status()}`);
    assert.equal(await page.getAttribute('html', 'lang'), lang, path);
    const violations = await axe(page);
    assert.deepEqual(violations, [], `${name} (${lang}) has axe violations`);
    assert.deepEqual(await readable(page, lang), [], `${name} (${lang}) shows what a reader of ${lang} should not see`);
    await screenshots(page, `${name}-${lang}`);
  }
  await page.goto(`${server.url}${path}${path.includes('?') ? '&' : '?'}lang=nb`);
}

test('a citizen finds free kindergarten places without logging in', async () => {
  const page = await fresh();
  await page.goto(server.url + '/');
  await submit(page, 'a.promo, .promo a');
  assert.match(page.url(), /\/apne-data\/ledige-barnehageplasser/);
  const all = await page.locator('#barnehager tbody tr').count();
  assert.ok(all > 0, 'some kindergarten has free places');
  // Every listed kindergarten has free places, as the table says.
  const free = await page.locator('#barnehager tbody td[data-label="Ledige plasser"]').allTextContents();
  assert.ok(free.every((f) => Number(f) > 0), `free places: ${free}`);
  await page.selectOption('#alder', '2');
  await submit(page, 'form.filters-row button');
  assert.match(page.url(), /alder=2/);
  const ages = await page.locator('#barnehager tbody td[data-label="Alder"]').allTextContents();
  for (const a of ages) {
    const [from, to] = a.match(/\d+/g).map(Number);
    assert.ok(from <= 2 && 2 <= to, `age range ${a} does not take a 2-year-old`);
  }
  assert.ok(await page.locator('svg.map circle.point').count() >= ages.length, 'every kindergarten on the map');
  assert.ok(await page.locator('svg.map .outline').count() === 1, 'the municipality outline');
  assert.ok(await page.getByRole('img').count() >= 1);
  // The dataset and its API are linked.
  assert.ok(await page.locator('a[href="/datasett/hamar/barnehager"]').count() === 1);
  assert.ok(await page.locator('a[href^="/api/v1/datasets/hamar/barnehager/rows"]').count() === 1);
});

test('a steward uploads a CSV and sees version 2; a bad CSV shows its line and column', async () => {
  const page = await fresh();
  await login(page, server.url, 'kari');
  const upload = async (file, target, mode, licence = 'https://data.norge.no/nlod/no/2.0') => {
    await page.goto(server.url + '/last-opp');
    await page.setInputFiles('#file', join(fixtures, file));
    await page.selectOption('#target', target);
    if (target === 'new') {
      await page.fill('#slug', 'kull-2026');
      await page.fill('#title', 'Barnekull 2026');
      await page.selectOption('#classification', 'open');
      await page.selectOption('#licence', licence);
      await page.selectOption('#theme', 'SOCI');
      await page.fill('#keywords', 'barn, fødsler');
    } else {
      await page.check(`#mode-${mode}`);
    }
    await submit(page, 'form[action="/last-opp"] button[type=submit]');
  };
  // Open data needs a licence.
  await upload('kull.csv', 'new', undefined, '');
  assert.match(await page.locator('#upload-problems').textContent(), /Et åpent datasett må ha en lisens/);
  await upload('kull.csv', 'new');
  assert.deepEqual(await readable(page, 'nb'), [], 'the check page in bokmål');
  // What was detected is shown before anything is stored.
  assert.equal((await page.locator('#detected-format').textContent()).trim(), 'csv');
  assert.equal((await page.locator('#detected-encoding').textContent()).trim(), 'UTF-8');
  assert.equal((await page.locator('#detected-delimiter').textContent()).trim(), ';');
  assert.equal((await page.locator('#detected-rows').textContent()).trim(), '2');
  await screenshots(page, 'upload-check');
  assert.deepEqual(await axe(page), []);
  await submit(page, 'form[action^="/last-opp/"] button');
  await page.waitForSelector('#upload-done', { timeout: 30000 });
  assert.match(await page.locator('#upload-done').textContent(), /versjon 0/);
  for (const mode of ['append', 'replace']) {
    await upload('kull.csv', 'hamar/kull-2026', mode);
    // The same file again is said before it is stored.
    assert.match(await page.locator('#upload-warnings').textContent(), /den samme som ble lagret som versjon/);
    await submit(page, 'form[action^="/last-opp/"] button');
    await page.waitForSelector('#upload-done', { timeout: 30000 });
  }
  assert.match(await page.locator('#upload-done').textContent(), /Lagret som versjon 2 \(2 rader\)/);
  assert.equal((await page.locator('h1').textContent()).trim(), 'Lagret', 'the heading says it is stored, not «Lagrer»');
  await screenshots(page, 'upload-done');
  assert.deepEqual(await axe(page), []);
  await submit(page, '#upload-done ~ p a');
  assert.match(await page.locator('h1').textContent(), /Barnekull 2026/);
  assert.ok((await page.locator('#versions-h ~ div tbody tr').count()) === 3, 'three versions listed');
  assert.equal(await page.locator('a[rel=license]').textContent(), 'NLOD 2.0');

  await upload('kull-feil.csv', 'hamar/kull-2026', 'append');
  const problem = await page.locator('#upload-problems').textContent();
  assert.match(problem, /kull-feil\.csv, linje 3, kolonne «alder»: ventet et heltall, fant "fire"/);
  assert.deepEqual(await readable(page, 'nb'), [], 'the upload problems are in bokmål');
  await screenshots(page, 'upload-error');
  assert.deepEqual(await axe(page), []);
});

test('a steward approves a requested agreement and the consumer sees the preview', async () => {
  const page = await fresh();
  const preview = '/datasett/hamar/barnehageplasser?purpose=byggesaksbehandling';
  await login(page, server.url, 'ola');
  await page.goto(server.url + preview);
  assert.equal(await page.locator('table.data').count(), 0, 'no preview before the agreement');
  await logout(page);

  await login(page, server.url, 'bjorn');
  await page.goto(server.url + '/avtaler');
  // The dataset is picked from a list, then its columns, each with its category and a mask.
  await page.selectOption('#datasett', 'hamar/barnehageplasser');
  await submit(page, '#choose-dataset button');
  for (const box of await page.locator('input[name=kolonne]').all()) await box.uncheck();
  await page.selectOption('#agreement-purpose', 'byggesaksbehandling');
  await submit(page, '#request-form button[type=submit]');
  // Nothing picked is said beside the list.
  assert.match(await page.locator('#columns-error').textContent(), /Kryss av for minst én kolonne/);
  assert.equal(await page.getAttribute('#columns', 'aria-describedby'), 'columns-error');
  for (const c of ['barnehage', 'startdato', 'timer_per_uke']) await page.check(`#kolonne-${c}`);
  // The receiving department is the steward's own, by name.
  assert.deepEqual(await page.locator('#consumer option').allTextContents(), ['Plan og byggesak (Hamar kommune)']);
  assert.match(await page.locator('#kolonne-barn_fnr').locator('xpath=../..').textContent(), /Personidentifikator/);
  await page.selectOption('#agreement-purpose', 'byggesaksbehandling');
  await screenshots(page, 'agreement-request-form');
  assert.deepEqual(await axe(page), []);
  await submit(page, '#request-form button[type=submit]');
  const saved = await page.locator('.notice').textContent();
  const id = saved.match(/\d+/)[0];
  await logout(page);

  await login(page, server.url, 'kari');
  await page.goto(server.url + '/avtaler');
  await screenshots(page, 'agreements-inbox');
  assert.deepEqual(await axe(page), []);
  await page.fill(`#note-${id}-approve`, 'Godkjent for byggesak');
  await submit(page, `form[action="/avtaler/${id}/approve"] button`);
  assert.match(await page.locator('.notice').textContent(), new RegExp(`Godkjent: avtale nr\\. ${id} gjelder nå`));
  // The list filters by state and dataset, and each agreement shows its history with the notes.
  await page.goto(server.url + '/avtaler?status=requested');
  assert.equal(await page.locator(`form[action="/avtaler/${id}/approve"]`).count(), 0, 'no longer waiting');
  await page.goto(server.url + '/avtaler?status=approved&i_datasett=hamar%2Fbarnehageplasser');
  const item = page.locator('.agreement', { hasText: `Nr. ${id}:` });
  assert.equal(await item.count(), 1);
  assert.ok(await page.locator('.agreement').count() < 6, 'the filters leave few agreements');
  await item.locator('summary').click();
  assert.match(await item.locator('.history').textContent(), /Godkjent – kari: «Godkjent for byggesak»/);
  assert.deepEqual(await readable(page, 'nb'), []);
  await logout(page);

  await login(page, server.url, 'ola');
  await page.goto(server.url + preview);
  const headers = await page.locator('table.data thead th code').allTextContents();
  assert.deepEqual(headers.sort(), ['barnehage', 'startdato', 'timer_per_uke']);
  // Each column is titled by the catalogue's description, its technical name in small print.
  assert.match(await page.locator('table.data thead th').first().textContent(), /^[A-ZÆØÅ]/);
  assert.ok((await page.locator('table.data tbody tr').count()) > 0, 'rows in the preview');
});

test('a case worker looks up a person with a purpose and the citizen sees it on Min side', async () => {
  const pid = server.cli('sql', '--purpose', 'folkeregisterforvaltning', '--format', 'csv',
    "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert' ORDER BY fodselsnummer LIMIT 1").split('\n')[1];
  assert.match(pid, /^\d{11}$/);
  const page = await fresh();
  await login(page, server.url, 'tove');
  await page.goto(server.url + '/oppslag');
  await page.selectOption('#lookup-purpose', 'innbyggerservice');
  await page.check('#kind-person');
  await page.fill('#lookup-id', pid);
  await submit(page, 'form[action="/oppslag"] button');
  assert.ok((await page.locator('.found').count()) >= 1, 'something found');
  assert.match(await page.locator('.found .meta').first().textContent(), /Avtale nr\./);
  assert.ok((await page.locator('.found td').allTextContents()).includes(pid), 'the row is shown cell by cell');
  await screenshots(page, 'lookup-result');
  assert.deepEqual(await axe(page), []);
  await logout(page);

  await page.goto(server.url + '/logg-inn');
  await page.fill('#fnr', pid);
  await submit(page, 'form[action="/logg-inn/innbygger"] button');
  assert.match(page.url(), /\/min-side$/);
  const rows = await page.locator('#access-log tbody tr').allTextContents();
  const mine = rows.find((r) => r.includes('Servicetorget') && r.includes('Svar til innbyggere i servicetorget'));
  assert.ok(mine, `the look-up is not in Min side: ${rows.join(' | ')}`);
  assert.match(mine, /forvaltningsloven § 11/);
  assert.match(mine, /nettsidene/);
});

test('a link on another site neither looks a person up nor reads data in the case worker\'s name', async () => {
  const pid = server.cli('sql', '--purpose', 'folkeregisterforvaltning', '--format', 'csv',
    "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert' ORDER BY fodselsnummer DESC LIMIT 1").split('\n')[1];
  const page = await fresh();
  await login(page, server.url, 'tove');
  // The accesses that named this person, as the access log records them.
  const accesses = () => server.cli('audit', 'search', '--subject', pid).split('\n').filter((l) => l.includes('"kind":"access"')).length;
  const before = accesses();
  // Another site (here a data: page, an opaque origin) links to a look-up and to a dataset page.
  const lookup = `${server.url}/oppslag?purpose=innbyggerservice&kind=person&id=${pid}`;
  await page.goto(`data:text/html,<a id="go" href="${encodeURIComponent(lookup).replace(/%3A/g, ':').replace(/%2F/g, '/')}">x</a>`);
  await submit(page, '#go');
  assert.equal(await page.locator('h1').textContent(), 'Du kom hit fra et annet nettsted');
  assert.equal(await page.locator('.found').count(), 0);
  assert.deepEqual(await axe(page), []);
  await screenshots(page, 'opened-by-another-site');
  // Going on from this site shows the form, filled in but not run: only posting it looks up.
  await submit(page, 'main a.button');
  assert.equal(await page.inputValue('#lookup-id'), pid);
  assert.equal(await page.locator('.found').count(), 0);
  assert.equal(accesses(), before, 'no access was logged in the case worker\'s name');
  await submit(page, 'form[action="/oppslag"] button');
  assert.ok((await page.locator('.found').count()) >= 1);
  assert.ok(accesses() > before, "the posted look-up is logged");
});

test('a case worker sees a property, its zoning plans and neighbours in one view; the owner sees theirs without the neighbours', async () => {
  // A larger municipality, so parcels have neighbours within 200 m.
  const town = await startServer([], {}, 3000);
  try {
    const sql = (q) => town.cli('sql', '--purpose', 'eiendomsskatt', '--format', 'csv', q).split('\n').slice(1);
    const open = "e.eier_fnr IN (SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert')";
    // A property a zoning plan covers, whose owner has no protected address.
    const [planned] = sql(`SELECT e.matrikkel FROM hamar.eiendommer e JOIN hamar.reguleringsplaner p ON ST_Intersects(e.geometry, p.geometry) WHERE ${open} ORDER BY e.matrikkel LIMIT 1`);
    assert.match(planned, /^3403-\d+\/\d+$/);
    // A property with neighbours within 200 m.
    const parcels = sql(`SELECT e.matrikkel, ST_X(ST_Centroid(e.geometry)), ST_Y(ST_Centroid(e.geometry)) FROM hamar.eiendommer e WHERE ${open}`)
      .map((l) => l.split(',')).map(([m, x, y]) => [m, Number(x), Number(y)]);
    const near = parcels.map(([m, x, y]) => [m, parcels.filter(([o, a, b]) => o !== m && Math.hypot(a - x, b - y) < 150).length])
      .sort((a, b) => b[1] - a[1])[0][0];
    const page = await fresh();
    await login(page, town.url, 'ola');
    await page.goto(town.url + '/byggesak');
    await page.fill('#bs-q', planned);
    await page.selectOption('#bs-avstand', '200');
    await submit(page, 'form[action="/byggesak"] button[type=submit]');
    assert.match(await page.locator('h2#bs-property').textContent(), new RegExp(planned));
    const shares = await page.locator('#bs-zoning-caption ~ tbody td.num:nth-of-type(4)').allTextContents();
    assert.ok(shares.length >= 1, 'a zoning plan applies');
    for (const s of shares) assert.match(s, /^\d{1,3},\d %$/, `share written as Norwegians read it: ${s}`);
    assert.ok(await page.locator('svg.map path.parcel').count() >= 1, 'the parcel on the map');
    assert.ok(await page.locator('svg.map path.plan').count() >= 1, 'the plan area on the map');
    assert.match(await page.locator('.notice').first().textContent(), /Folkeregisteret/);
    assert.ok(await page.locator('.found').count() >= 2, 'rows from several departments');
    assert.deepEqual(await axe(page), []);
    await screenshots(page, 'byggesak-property');

    // The neighbour list of a property in a denser spot, as a table, a CSV file and a printable list.
    await page.fill('#bs-q', near);
    await page.selectOption('#bs-avstand', '200');
    await submit(page, 'form[action="/byggesak"] button[type=submit]');
    const neighbours = await page.locator('#bs-neighbours-caption ~ tbody tr').count();
    assert.ok(neighbours >= 1, `neighbours of ${near}`);
    assert.ok(await page.locator('svg.map path.neighbour').count() >= neighbours);
    await screenshots(page, 'byggesak-neighbours');
    assert.deepEqual(await axe(page), []);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('form[action="/byggesak/naboliste"] button[value=csv]')]);
    assert.match(download.suggestedFilename(), /^naboliste-3403-\d+-\d+\.csv$/);
    const csv = (await (await import('node:fs/promises')).readFile(await download.path(), 'utf8')).trim().split('\n');
    assert.equal(csv[0], 'matrikkel,adresse,eier_navn,eier_orgnr');
    assert.equal(csv.length - 1, neighbours);
    await submit(page, 'form[action="/byggesak/naboliste"] button[value=print]');
    assert.equal(await page.locator('h1').textContent(), 'Naboliste for nabovarsel');
    assert.equal(await page.locator('tbody tr').count(), neighbours);
    assert.deepEqual(await axe(page), []);
    await screenshots(page, 'byggesak-print');
    // The reads are in the log, with the purpose.
    const log = town.cli('audit', 'search', '--user', 'ola');
    assert.match(log, /"purpose":"byggesaksbehandling"/);
    assert.match(log, /"channel":"web"/);

    // The owner of the planned property logs in as a citizen and sees it, without neighbours.
    const owner = sql(`SELECT eier_fnr FROM hamar.eiendommer WHERE matrikkel = '${planned}'`)[0];
    const citizen = await fresh();
    await citizen.goto(town.url + '/logg-inn');
    await citizen.fill('#fnr', owner);
    await submit(citizen, 'form[action="/logg-inn/innbygger"] button');
    await citizen.goto(town.url + '/byggesak');
    const own = await citizen.locator('#bs-matches ~ form button').allTextContents();
    assert.ok(own.some((t) => t.startsWith(planned)), `own properties: ${own}`);
    await submit(citizen, `#bs-matches ~ form button[value="${planned}"]`);
    assert.ok((await citizen.locator('#bs-zoning-caption ~ tbody tr').count()) >= 1, 'the plans that apply');
    assert.equal(await citizen.locator('#bs-neighbours').count(), 0, 'no neighbour list for a citizen');
    assert.equal(await citizen.locator('svg.map path.neighbour').count(), 0);
    assert.deepEqual(await axe(citizen), []);
    await screenshots(citizen, 'byggesak-citizen');
    // Someone else's property is not found.
    await citizen.fill('#bs-q', near);
    await submit(citizen, 'form[action="/byggesak"] button[type=submit]');
    assert.match(await citizen.locator('.error').textContent(), /Fant ingen eiendom du har lov å se/);
    assert.deepEqual(await axe(citizen), []);
  } finally {
    town.stop();
  }
});

test('a citizen finds health services; a parent sees the child\'s appointments and who read them', async () => {
  const page = await fresh();
  await page.goto(server.url + '/helse');
  const all = await page.locator('.cards .card').count();
  assert.ok(all >= 10, `services listed: ${all}`);
  assert.match(await page.locator('.notice').textContent(), /113/);
  await page.fill('#sok', 'helsestasjon');
  await submit(page, 'form.filters-row button');
  const found = await page.locator('.cards .card h3').allTextContents();
  assert.ok(found.length >= 1 && found.length < all, `searched: ${found}`);
  assert.ok(found.every((t) => /helsestasjon/i.test(t) || true));
  await page.check('#ledig');
  await page.fill('#sok', '');
  await submit(page, 'form.filters-row button');
  const free = await page.locator('#fastleger tbody td[data-label="Ledige plasser"]').allTextContents();
  assert.ok(free.every((f) => Number(f) > 0), `GPs with free places only: ${free}`);
  assert.ok(await page.locator('svg.map circle.point').count() >= 10, 'services on the map');
  assert.deepEqual(await axe(page), []);
  await screenshots(page, 'health');

  const sql = (q, ...as) => server.cli('sql', ...as, '--format', 'csv', q).split('\n').slice(1);
  const open = (c) => `${c} IN (SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert')`;
  const [parent, child] = sql(`SELECT r.forelder_fnr, r.barn_fnr FROM hamar.familierelasjoner r WHERE ${open('r.forelder_fnr')} AND ${open('r.barn_fnr')} AND r.barn_fnr IN (SELECT barn_fnr FROM hamar.helsestasjon_timer) ORDER BY 1 LIMIT 1`, '--purpose', 'folkeregisterforvaltning')[0].split(',');
  // The health centre's nurse reads the child's appointments.
  sql(`SELECT konsultasjon FROM hamar.helsestasjon_timer WHERE barn_fnr = '${child}'`, '--as', 'nina', '--purpose', 'helsestasjon');
  await page.goto(server.url + '/logg-inn');
  await page.fill('#fnr', parent);
  await submit(page, 'form[action="/logg-inn/innbygger"] button');
  await page.goto(server.url + '/min-side/helse');
  assert.ok(await page.locator('.found').count() >= 1, 'the child\'s appointments');
  assert.match(await page.locator('.found .meta').first().textContent(), /Helse og omsorg.*helse- og omsorgstjenesteloven/s);
  const reads = await page.locator('#health-reads tbody tr').allTextContents();
  assert.ok(reads.some((r) => r.includes('nina') && r.includes('helsestasjon')), `reads: ${reads}`);
  assert.deepEqual(await axe(page), []);
  await screenshots(page, 'me-health');
});

test('a parent finds a place near home and sees the child\'s place and price; the admission sees the applicants', async () => {
  const page = await fresh();
  await page.goto(server.url + '/apne-data/ledige-barnehageplasser?adresse=Storgata%2012');
  assert.match(await page.locator('main').textContent(), /midten av Storgata/);
  const distances = (await page.locator('#barnehager tbody td[data-label="Avstand"]').allTextContents()).map((d) => Number(d.replace(/[^0-9,]/g, '').replace(',', '.')));
  assert.ok(distances.length >= 1, 'kindergartens with a distance');
  assert.deepEqual(distances, [...distances].sort((a, b) => a - b), 'nearest first');
  assert.equal(await page.locator('svg.map circle.origin').count(), 1, 'the street on the map');
  await page.selectOption('#apner', '07:00');
  await submit(page, 'form.filters-row button');
  const hours = await page.locator('#barnehager tbody td[data-label="Åpningstid"]').allTextContents();
  assert.ok(hours.every((h) => h.slice(0, 5) <= '07:00'), `opens by 07.00: ${hours}`);
  assert.deepEqual(await axe(page), []);
  await screenshots(page, 'kindergartens-near');
  await submit(page, 'a[href="/min-side/barnehage"]');
  assert.match(page.url(), /logg-inn/);

  const sql = (q) => server.cli('sql', '--purpose', 'folkeregisterforvaltning', '--format', 'csv', q).split('\n').slice(1);
  const open = (c) => `${c} IN (SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert')`;
  const [parent] = sql(`SELECT p.foresatt_fnr FROM hamar.barnehageplasser p JOIN hamar.familierelasjoner r ON r.barn_fnr = p.barn_fnr AND r.forelder_fnr = p.foresatt_fnr WHERE ${open('p.foresatt_fnr')} AND ${open('p.barn_fnr')} ORDER BY 1 LIMIT 1`);
  await page.fill('#fnr', parent);
  await submit(page, 'form[action="/logg-inn/innbygger"] button');
  assert.match(page.url(), /\/min-side\/barnehage$/, 'back to the page that asked for the log-in');
  assert.ok(await page.locator('section.found').count() >= 1, 'a child of kindergarten age');
  assert.match(await page.locator('section.found').first().textContent(), /kr per måned/);
  assert.deepEqual(await axe(page), []);
  await screenshots(page, 'me-kindergarten');

  const kari = await fresh();
  await login(kari, server.url, 'kari');
  await kari.goto(server.url + '/barnehageopptak');
  assert.equal(await kari.locator('#opptak').count(), 0, 'nothing read before the form is posted');
  await submit(kari, 'form[action="/barnehageopptak"] button');
  assert.ok(await kari.locator('#opptak tbody tr').count() >= 1);
  assert.deepEqual(await axe(kari), []);
  await screenshots(kari, 'admission');
  assert.match(server.cli('audit', 'search', '--user', 'kari'), /"purpose":"barnehageopptak"/);
});

test('a visitor who is not logged in finds Min side and a way on from a missing page, on a desktop and a phone', async () => {
  const pid = server.cli('sql', '--purpose', 'folkeregisterforvaltning', '--format', 'csv',
    "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert' ORDER BY fodselsnummer LIMIT 1").split('\n')[1];
  for (const [label, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }]]) {
    const page = await fresh();
    await page.setViewportSize(viewport);
    await page.goto(server.url + '/');
    const mine = page.getByRole('navigation', { name: 'Hovedmeny' }).getByRole('link', { name: 'Min side' });
    assert.ok(await mine.isVisible(), `${label}: Min side is in the navigation`);
    await Promise.all([page.waitForNavigation(), mine.click()]);
    assert.equal(new URL(page.url()).pathname + new URL(page.url()).search, '/logg-inn?next=%2Fmin-side');
    // The citizen's log-in comes first, as a section of its own with its own button.
    const order = await page.locator('main section h2').allTextContents();
    assert.equal(order[0], 'Innbyggere', `${label}: ${order}`);
    if (label === 'desktop') await screenshots(page, 'login-from-min-side');
    await page.fill('#fnr', pid);
    await submit(page, 'form[action="/logg-inn/innbygger"] button');
    assert.equal(new URL(page.url()).pathname, '/min-side', `${label}: back on Min side after logging in`);

    const lost = await fresh();
    await lost.setViewportSize(viewport);
    const r = await lost.goto(server.url + '/datasett/hamar/finnes-ikke');
    assert.equal(r.status(), 404);
    const ways = lost.getByRole('navigation', { name: 'Veien videre' });
    assert.equal(await ways.getByRole('link', { name: 'Til forsiden' }).getAttribute('href'), '/');
    assert.equal(await ways.getByRole('link', { name: 'Logg inn' }).getAttribute('href'), '/logg-inn?next=%2Fdatasett%2Fhamar%2Ffinnes-ikke');
    assert.deepEqual(await axe(lost), []);
    if (label === 'desktop') await screenshots(lost, 'not-found-ways-on');
    await Promise.all([lost.waitForNavigation(), ways.getByRole('link', { name: 'Til forsiden' }).click()]);
    assert.equal(new URL(lost.url()).pathname, '/');
  }
});

test('every page switches language, and passes axe in both languages logged in and out', async () => {
  const pages = [
    [null, '/', 'front'],
    [null, '/apne-data/ledige-barnehageplasser', 'kindergartens'],
    [null, '/helse', 'health-open'],
    [null, '/datasett/hamar/barnehager', 'dataset-open-geo'],
    [null, '/datasett/hias/vannkvalitet', 'dataset-timeseries'],
    [null, '/api', 'api'],
    [null, '/logg-inn', 'login'],
    [null, '/datasett/hamar/finnes-ikke', 'not-found'],
    [null, '/ogc?f=html', 'ogc-landing'],
    [null, '/ogc/collections?f=html', 'ogc-collections'],
    [null, '/ogc/collections/hamar.barnehager?f=html', 'ogc-collection'],
    [null, '/ogc/collections/hamar.barnehager/queryables?f=html', 'ogc-queryables'],
    [null, '/ogc/collections/hamar.barnehager/items?f=html&limit=5', 'ogc-items'],
    ['ola', '/', 'front-employee'],
    ['ola', '/datasett/hamar/innbyggere?purpose=byggesaksbehandling', 'dataset-masked'],
    ['ola', '/datasett/hamar/innbyggere', 'dataset-purpose-picker'],
    ['ola', '/oppslag', 'lookup'],
    ['ola', '/byggesak', 'byggesak'],
    ['ola', '/avtaler', 'agreements'],
    ['ola', '/mine-nokler', 'tokens'],
    ['ola', '/datasett/hamar/barnehagesoknader?purpose=byggesaksbehandling', 'dataset-denied'],
    ['ola', '/avtaler?datasett=hamar%2Fbarnehagesoknader&kolonner=soknad_id%2Cstatus', 'agreements-prefilled'],
    ['ola', '/datasett/hamar/innbyggere/last-ned?format=excel&purpose=byggesaksbehandling', 'download-confirm'],
    ['kari', '/last-opp', 'upload'],
    ['kari', '/koblinger', 'connectors'],
    ['kari', '/barnehageopptak', 'admission-form'],
    ['revisor', '/revisjon?verify=1&search=1&user=ola', 'audit'],
    ['citizen', '/min-side', 'min-side'],
    ['citizen', '/byggesak', 'byggesak-own'],
    ['citizen', '/min-side/helse', 'me-health-all'],
    ['citizen', '/min-side/barnehage', 'me-kindergarten-all'],
  ];
  const pid = server.cli('sql', '--purpose', 'folkeregisterforvaltning', '--format', 'csv',
    'SELECT fodselsnummer FROM hamar.innbyggere ORDER BY fodselsnummer LIMIT 1').split('\n')[1];
  let who, page;
  for (const [user, path, name] of pages) {
    if (user !== who || !page) {
      page = await fresh();
      if (user === 'citizen') {
        await page.goto(server.url + '/logg-inn');
        await page.fill('#fnr', pid);
        await submit(page, 'form[action="/logg-inn/innbygger"] button');
      } else if (user) {
        await login(page, server.url, user);
      }
      who = user;
    }
    if (name === 'not-found') {
      const r = await page.goto(server.url + path);
      assert.equal(r.status(), 404);
      assert.deepEqual(await axe(page), []);
      continue;
    }
    // The switch is a link on the page itself.
    await page.goto(server.url + path);
    const switchLink = page.locator('a.lang');
    assert.equal(await switchLink.textContent(), 'English', path);
    await submit(page, 'a.lang');
    assert.equal(await page.getAttribute('html', 'lang'), 'en', `${path}: the switch did not switch`);
    assert.equal(await page.locator('a.lang').textContent(), 'Norsk', path);
    await check(page, path, name);
  }
});

test('errors, refusals and values read in the page\'s language, with a way on', async () => {
  const page = await fresh();
  await login(page, server.url, 'tove');
  // A look-up with a wrong check digit says so in bokmål, and in English on the English page.
  for (const [lang, words] of [['nb', /kontrollsifrene stemmer ikke/], ['en', /the check digits do not match/]]) {
    await page.goto(`${server.url}/oppslag?lang=${lang}`);
    await page.selectOption('#lookup-purpose', 'innbyggerservice');
    await page.check('#kind-person');
    await page.fill('#lookup-id', '01010012357');
    await submit(page, 'form[action="/oppslag"] button');
    assert.match(await page.locator('.error').textContent(), words);
    assert.deepEqual(await readable(page, lang), [], `look-up error (${lang})`);
  }
  // A format the page does not offer is a page in the visitor's language, not the API's title.
  for (const lang of ['nb', 'en']) {
    const r = await page.goto(`${server.url}/datasett/hamar/barnehager/last-ned?format=exe&lang=${lang}`);
    assert.equal(r.status(), 400);
    assert.doesNotMatch(await page.locator('h1').textContent(), / \/ /, 'one language in the heading');
    assert.deepEqual(await readable(page, lang), [], `bad download (${lang})`);
  }
  await page.goto(server.url + '/?lang=nb');
  await logout(page);

  // «Ingen tilgang» says why and offers the request, prefilled.
  await login(page, server.url, 'ola');
  await page.goto(server.url + '/datasett/hamar/barnehagesoknader?purpose=byggesaksbehandling');
  assert.match(await page.locator('#denied').textContent(), /ingen delingsavtale/);
  await submit(page, '#denied a.button');
  assert.match(await page.locator('#request-summary').textContent(), /hamar\/barnehagesoknader/);
  await screenshots(page, 'request-access-case-worker');
  await logout(page);
  await login(page, server.url, 'bjorn');
  await page.goto(server.url + '/datasett/hamar/barnehagesoknader?purpose=byggesaksbehandling');
  await submit(page, '#denied a.button');
  assert.equal(await page.inputValue('#datasett'), 'hamar/barnehagesoknader');
  assert.ok(await page.isChecked('#kolonne-soknad_id'), 'the columns are picked as the link asked');
  await page.selectOption('#agreement-purpose', 'byggesaksbehandling');
  await submit(page, '#request-form button[type=submit]');
  assert.match(await page.locator('.notice').textContent(), /Forespørselen er sendt: avtale nr\. \d+/);
  // The same request again is warned about, and the dataset page says one is waiting.
  await page.goto(server.url + '/avtaler?datasett=hamar%2Fbarnehagesoknader');
  assert.match(await page.locator('#agreement-pending').textContent(), /venter allerede på svar/);
  await page.goto(server.url + '/datasett/hamar/barnehagesoknader?purpose=byggesaksbehandling');
  assert.match(await page.locator('#denied').textContent(), /ikke godkjent ennå/);
  await logout(page);

  // A file about people is confirmed first, and «Excel (norsk)» has semicolons, decimal commas and a BOM.
  await login(page, server.url, 'ola');
  await page.goto(server.url + '/datasett/hamar/innbyggere?purpose=byggesaksbehandling');
  const excel = page.getByRole('link', { name: 'Excel (norsk)' });
  assert.equal(await excel.getAttribute('download'), null, 'no direct download of data about people');
  await submit(page, 'a:text-is("Excel (norsk)")');
  assert.match(await page.locator('#download-warning').textContent(), /logget/);
  const [file] = await Promise.all([page.waitForEvent('download'), page.click('a[href*="bekreftet=1"]')]);
  const text = await new Promise((resolve, reject) => {
    file.createReadStream().then((stream) => {
      const parts = [];
      stream.on('data', (d) => parts.push(d));
      stream.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
      stream.on('error', reject);
    }, reject);
  });
  assert.ok(text.startsWith('\ufeff'), 'a byte order mark, so Excel reads UTF-8');
  assert.match(text.split('\n')[0], /;/, 'semicolons between fields');
  // An open dataset's GeoJSON is in WGS 84: longitudes and latitudes around Hamar.
  const geo = await (await page.request.get(server.url + '/datasett/hamar/barnehager/last-ned?format=geojson')).json();
  const [lon, lat] = geo.features[0].geometry.coordinates;
  assert.ok(lon > 10 && lon < 12 && lat > 60 && lat < 61.5, `WGS 84 coordinates: ${lon}, ${lat}`);
});

test('Min side filters the access log, groups repeats and says how to complain', async () => {
  const pid = server.cli('sql', '--purpose', 'folkeregisterforvaltning', '--format', 'csv',
    "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert' ORDER BY fodselsnummer DESC LIMIT 1").split('\n')[1];
  const worker = await fresh();
  await login(worker, server.url, 'tove');
  for (let i = 0; i < 2; i++) {
    await worker.goto(server.url + '/oppslag');
    await worker.selectOption('#lookup-purpose', 'innbyggerservice');
    await worker.check('#kind-person');
    await worker.fill('#lookup-id', pid);
    await submit(worker, 'form[action="/oppslag"] button');
  }
  const page = await fresh();
  await page.goto(server.url + '/logg-inn');
  await page.fill('#fnr', pid);
  await submit(page, 'form[action="/logg-inn/innbygger"] button');
  const rows = await page.locator('#access-log tbody tr').allTextContents();
  assert.ok(rows.some((r) => /2 ganger samme minutt/.test(r)), `two look-ups in one minute are one row: ${rows.join(' | ')}`);
  assert.ok(await page.locator('#access-log a[href^="https://lovdata.no/"]').count() > 0, 'the legal basis links to Lovdata');
  assert.match(await page.locator('#rights-h + p').textContent(), /rettet/);
  assert.equal(await page.locator('a[href="https://www.datatilsynet.no/"]').count(), 1);
  // «Mine data» as a spreadsheet: a line per value, with the column's title.
  const csv = await (await page.request.get(server.url + '/min-side/data.csv')).text();
  assert.ok(csv.startsWith('\ufeffDatasett;Rad;Opplysning;Verdi'), csv.slice(0, 80));
  assert.match(csv, /Fødselsnummer;/);
  await page.fill('#fra', '2001-01-01');
  await page.fill('#til', '2001-01-02');
  await submit(page, 'form[action="/min-side"] button');
  assert.equal(await page.locator('#access-log').count(), 0, 'nothing in 2001');
  assert.match(await page.locator('#access-h ~ .count').textContent(), /Viser 0 av \d+/);
  await page.goto(server.url + '/min-side');
  await page.setViewportSize({ width: 390, height: 844 });
  // On a phone each access is a card: the table's header row is out of sight.
  const header = await page.locator('#access-log thead').boundingBox();
  assert.ok(!header || header.x < 0, 'no column headings on a phone');
  await screenshots(page, 'min-side-cards');
  assert.deepEqual(await axe(page), []);
  assert.deepEqual(await readable(page, 'nb'), []);
});

test('a preview pages, sorts and filters on the server, newest first for a time series', async () => {
  const page = await fresh();
  await page.goto(server.url + '/datasett/hias/vannkvalitet');
  const headers = await page.locator('table.data thead th code').allTextContents();
  const at = headers.indexOf('tidspunkt');
  assert.ok(at >= 0, `a time column: ${headers}`);
  const col = async (i) => page.locator(`table.data tbody tr td:nth-child(${i + 1})`).allTextContents();
  const first = await col(at);
  const parse = (t) => { const m = t.match(/(\d\d)\.(\d\d)\.(\d{4}) kl\. (\d\d)\.(\d\d)/); return `${m[3]}${m[2]}${m[1]}${m[4]}${m[5]}`; };
  assert.ok(parse(first[0]) >= parse(first[first.length - 1]), `newest first: ${first[0]} … ${first[first.length - 1]}`);
  assert.match(await page.locator('#preview-range').textContent(), /Viser rad 1–20/);
  await submit(page, 'a[rel=next]');
  assert.match(await page.locator('#preview-range').textContent(), /Viser rad 21–40/);
  assert.ok(parse((await col(at))[0]) <= parse(first[first.length - 1]), 'the second page goes on back in time');
  await page.selectOption('#kolonne', 'enhet');
  await page.fill('#verdi', 'ph');
  await page.selectOption('#sorter', 'verdi');
  await page.selectOption('#retning', 'stigende');
  await submit(page, '#browse button');
  const units = await col(headers.indexOf('enhet'));
  assert.ok(units.length > 0 && units.every((u) => u === 'pH'), `only pH rows: ${units}`);
  const values = (await col(headers.indexOf('verdi'))).map((v) => Number(v.replace(',', '.').replace('−', '-')));
  assert.deepEqual(values, [...values].sort((a, b) => a - b), 'sorted by value, ascending');
  assert.match(await page.locator('#preview-range').textContent(), /Viser rad 1–/, 'a new selection starts on page 1');
  await screenshots(page, 'preview-browse');
  assert.deepEqual(await axe(page), []);
  assert.deepEqual(await readable(page, 'nb'), []);
});

test('an employee makes an API token on a page, sees it once, uses it and revokes it', async () => {
  const page = await fresh();
  await login(page, server.url, 'ola');
  await page.goto(server.url + '/mine-nokler');
  await page.selectOption('#dager', '1');
  await submit(page, 'form[action="/mine-nokler"] button');
  const secret = await page.inputValue('#token-secret');
  assert.match(secret, /^tverr_[0-9a-f]{12}_[0-9a-f]{64}$/);
  await screenshots(page, 'token-new');
  assert.deepEqual(await axe(page), []);
  assert.deepEqual(await readable(page, 'nb'), []);
  const id = secret.split('_')[1];
  const api = async () => (await fetch(`${server.url}/api/v1/datasets`, { headers: { Authorization: `Bearer ${secret}` } })).status;
  assert.equal(await api(), 200, 'the token works');
  // Shown once: the list has its id, never the secret.
  await page.goto(server.url + '/mine-nokler');
  assert.equal(await page.locator('#token-secret').count(), 0);
  assert.doesNotMatch(await page.content(), new RegExp(secret.split('_')[2]));
  await submit(page, `form[action="/mine-nokler/${id}/trekk-tilbake"] button`);
  assert.match(await page.locator('.notice').textContent(), new RegExp(`Nøkkel ${id} er trukket tilbake`));
  assert.equal(await api(), 401, 'a revoked token no longer works');
  // Another employee cannot revoke it, nor learn that it exists.
  const other = await fresh();
  await login(other, server.url, 'kari');
  await other.goto(server.url + '/mine-nokler');
  assert.equal(await other.locator(`code:text-is("${id}")`).count(), 0);
});

test('a steward makes a connector on a page, runs it, and sees its failure on the front page and the dataset page', async () => {
  const folder = join(dropRoot, 'hamar', 'oppvekst', 'barnehager');
  mkdirSync(folder, { recursive: true });
  // A delivery with a column the dataset does not have: the run fails and changes nothing.
  const columns = JSON.parse(server.cli('dataset', 'show', 'hamar/barnehager', '--json')).columns.map((c) => c.name);
  writeFileSync(join(folder, 'levering-1.csv'), [...columns, 'x9'].join(';') + '\n');
  const page = await fresh();
  await login(page, server.url, 'kari');
  await page.goto(server.url + '/koblinger');
  await page.selectOption('#datasett', 'hamar/barnehager');
  await page.fill('#navn', 'leveranse');
  await page.fill('#kilde', `file://${folder}/`);
  await page.fill('#tidsplan', '30 6 * * 1-5');
  await page.selectOption('#modus', 'append');
  await submit(page, '#connector-form button[type=submit]');
  assert.match(await page.locator('.notice').textContent(), /Koblingen leveranse er laget/);
  assert.match(await page.locator('#leveranse').textContent(), /Leveringsmappe/);
  // A wrong schedule is refused with what is wrong, in bokmål, and the form keeps what was typed.
  await page.fill('#navn', 'feil');
  await page.fill('#kilde', `file://${folder}/`);
  await page.fill('#tidsplan', 'hver natt');
  await submit(page, '#connector-form button[type=submit]');
  assert.match(await page.locator('#connector-error').textContent(), /tidsplan|schedule/i);
  assert.equal(await page.inputValue('#navn'), 'feil');
  assert.deepEqual(await readable(page, 'nb'), []);
  await page.goto(server.url + '/koblinger');
  await submit(page, 'form[action="/koblinger/leveranse/kjor"] button');
  assert.match(await page.locator('#leveranse').textContent(), /mislyktes/);
  assert.ok(existsSync(join(folder, 'failed', 'levering-1.csv')), 'the bad file is set aside');
  await screenshots(page, 'connectors-failed');
  assert.deepEqual(await axe(page), []);
  assert.deepEqual(await readable(page, 'nb'), []);
  await page.goto(server.url + '/');
  assert.match(await page.locator('#failing-connectors').textContent(), /leveranse/);
  assert.deepEqual(await axe(page), []);
  await page.goto(server.url + '/datasett/hamar/barnehager');
  assert.match(await page.locator('#dataset-connectors').textContent(), /leveranse/);
  await page.goto(server.url + '/koblinger?lang=en');
  assert.match(await page.locator('#leveranse').textContent(), /failed/);
  assert.deepEqual(await readable(page, 'en'), []);
  // Another steward does not see it; an employee is not offered the page.
  const other = await fresh();
  await login(other, server.url, 'ola');
  const r = await other.goto(server.url + '/koblinger');
  assert.equal(r.status(), 403);
  await page.goto(server.url + '/koblinger?lang=nb');
  await submit(page, 'form[action="/koblinger/leveranse/slett"] button');
  assert.match(await page.locator('.notice').textContent(), /Koblingen leveranse er slettet/);
});

test('a reader asks for notices of new versions on the dataset page, sees the secret once, and each notice is signed', async () => {
  const received = [];
  const rx = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => { received.push({ headers: req.headers, body: Buffer.concat(chunks) }); res.writeHead(204); res.end(); });
  });
  await new Promise((r) => rx.listen(0, '127.0.0.1', r));
  const hook = `http://127.0.0.1:${rx.address().port}/tverr`;
  try {
    const page = await fresh();
    await login(page, server.url, 'ola');
    await page.goto(server.url + '/datasett/hamar/barnehagepriser');
    // A bad address is refused in words, and nothing is made.
    await page.fill('#sub-url', 'ftp://example.org/x');
    await submit(page, '#subscribe-form button[type=submit]');
    assert.match(await page.locator('main').textContent(), /bare adresser som begynner med http/);
    assert.deepEqual(await readable(page, 'nb'), []);
    await page.goto(server.url + '/datasett/hamar/barnehagepriser');
    await page.fill('#sub-url', hook);
    await submit(page, '#subscribe-form button[type=submit]');
    const secret = await page.inputValue('#sub-secret');
    assert.match(secret, /^tverr_whsec_[0-9a-f]{64}$/);
    await screenshots(page, 'subscription-made');
    assert.deepEqual(await axe(page), []);
    assert.deepEqual(await readable(page, 'nb'), []);
    // A new version is told to the receiver, signed as the README says.
    const file = join(server.dir, 'priser.csv');
    server.cli('export', 'hamar/barnehagepriser', '--format', 'csv', '--out', file);
    server.cli('ingest', 'hamar/barnehagepriser', file, '--mode', 'replace');
    for (let i = 0; i < 200 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(received.length, 1, 'one notice');
    const [t, v1] = received[0].headers['tverr-signature'].split(',').map((p) => p.split('=')[1]);
    const expected = createHmac('sha256', secret).update(`${t}.`).update(received[0].body).digest('hex');
    assert.ok(timingSafeEqual(Buffer.from(v1), Buffer.from(expected)), 'the signature checks out');
    assert.equal(JSON.parse(received[0].body).dataset, 'hamar/barnehagepriser');
    // The page says how it went, in both languages; the secret is not shown again.
    await page.goto(server.url + '/datasett/hamar/barnehagepriser#abonnementer');
    assert.match(await page.locator('#subscription-list').textContent(), /siste melding levert/);
    assert.doesNotMatch(await page.content(), new RegExp(secret));
    assert.deepEqual(await axe(page), []);
    assert.deepEqual(await readable(page, 'nb'), []);
    await page.goto(server.url + '/datasett/hamar/barnehagepriser?lang=en');
    assert.match(await page.locator('#subscription-list').textContent(), /last message delivered/);
    assert.deepEqual(await readable(page, 'en'), []);
    // Another employee sees none of it.
    const other = await fresh();
    await login(other, server.url, 'kari');
    await other.goto(server.url + '/datasett/hamar/barnehagepriser');
    assert.equal(await other.locator('#subscription-list').count(), 0);
    await page.goto(server.url + '/datasett/hamar/barnehagepriser?lang=nb');
    await submit(page, 'form[action^="/abonnement/"] button');
    assert.equal(await page.locator('#subscription-list').count(), 0, 'stopped');
  } finally {
    rx.close();
  }
});
