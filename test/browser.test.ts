// End-to-end tests of the examples in a real browser: Debian's Chromium driven by playwright-core
// (never a downloaded browser). Outside CI a missing Chromium skips them with one line; under
// CI=true it is a failure, since .ci/run installs it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createFileServer } from '../lib/index.js';
import { connect } from '../lib/client/index.js';
import { layout, tree } from './helpers/uploads.js';
import { defer } from './helpers/defer.js';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHOTS = join(ROOT, 'test-output', 'screenshots');
const haveChromium = existsSync(CHROMIUM);
const skip = !haveChromium && process.env.CI !== 'true' ? `browser tests skipped: ${CHROMIUM} not found (apt-get install chromium)` : false;
if (skip) console.log(`# ${skip}`);

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// Callbacks given to page.evaluate run in the browser; these are the browser globals they use (the
// DOM lib is not loaded for this Node program).
declare const document: any;
declare const DataTransfer: any;
declare const DragEvent: any;
declare const window: any;

// The names page: uploads what is picked, then lists each file by the name taken from its
// returned path, with a link to follow, a `download` link carrying that name, a `?download` link
// and a bare `download` link (the browser names the file from the URL).
const NAMES_PAGE = `<!doctype html><meta charset="utf-8"><title>names</title>
<input id="picker" type="file" multiple><ul id="files"></ul>
<script>
document.getElementById('picker').addEventListener('change', async (event) => {
  const body = new FormData();
  for (const f of event.target.files) body.append('files', f, f.name);
  const { files } = await (await fetch('/_f/', { method: 'POST', body })).json();
  for (const path of files) {
    const raw = path.slice(path.lastIndexOf('/') + 1);
    const li = document.createElement('li');
    li.dataset.raw = raw;
    const link = (cls, href, text) => {
      const a = document.createElement('a');
      a.className = cls;
      a.href = href;
      a.textContent = text;
      li.append(a, ' ');
      return a;
    };
    const name = decodeURIComponent(raw);
    link('open', path, name);
    link('save', path, 'save').download = name;
    link('attach', path + '?download', 'attachment');
    link('bare', path, 'named by the browser').download = '';
    document.getElementById('files').append(li);
  }
});
</script>
`;

/**
 * The name Chromium saves `name` under, by its own rules whatever the server says: it writes `?`
 * as `_` in any name (its file-name sanitising calls `?` illegal on every platform), and a name it
 * takes from the URL alone ends at a `;` (GURL reads `;…` in the last segment as path parameters),
 * to which it adds the extension of the `Content-Type`.
 */
function chromiumSaves(name: string, kind: string): string {
  const safe = name.replace(/\?/g, '_');
  const semi = safe.indexOf(';');
  return kind === 'bare' && semi >= 0 ? `${safe.slice(0, semi)}.txt` : safe;
}

interface Example {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop(): Promise<number | null>;
}

/** Starts an example script on port 0 and resolves once it prints the URL to open. */
async function startExample(script: string, env: Record<string, string>, args: string[] = []): Promise<Example> {
  const child = spawn(process.execPath, [join(ROOT, 'examples', script), ...args], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d; });
  child.stderr!.on('data', (d: Buffer) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start:\n${out}`)), 15_000);
    const onData = (): void => {
      const m = /open (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`${script} exited ${code}:\n${out}`)); });
  });
  return {
    url,
    child,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** A hash of the pixels the page currently shows for `selector` (an <img>), read through a canvas. */
function imagePixels(page: Page, selector: string): Promise<{ width: number; hash: number }> {
  return page.$eval(selector, (img) => {
    const el = img as any;
    const canvas = document.createElement('canvas');
    canvas.width = el.naturalWidth;
    canvas.height = el.naturalHeight;
    const ctx = canvas.getContext('2d')!;
    ctx.drawImage(el, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width || 1, canvas.height || 1).data;
    let hash = 0;
    for (let i = 0; i < data.length; i += 4) hash = (hash * 31 + data[i]! * 7 + data[i + 1]! * 3 + data[i + 2]!) | 0;
    return { width: el.naturalWidth, hash };
  });
}

test("the examples' data dirs are ignored by git (each example stores its uploads in examples/<name>/.data)", () => {
  const paths = ['upload-page', 'live-stream', 'express'].map((name) => `examples/${name}/.data/f/0b4bd0b6-4f7e-4a53-9d1b-2a2cf2a5f0f0/big.bin`);
  const ignored = execFileSync('git', ['-C', ROOT, 'check-ignore', '--no-index', ...paths], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(ignored, paths);
  for (const script of ['upload-page/server.mjs', 'live-stream/publish.mjs', 'express/app.mjs']) {
    assert.ok(readFileSync(join(ROOT, 'examples', script), 'utf8').includes("new URL('./.data', import.meta.url)"), `${script} keeps its data in .data`);
  }
});

describe('in a real browser', { skip, timeout: 240_000 }, () => {
  let context: BrowserContext;
  let tmp: string;

  before(async () => {
    assert.ok(haveChromium, `${CHROMIUM} is required under CI=true (apt-get install chromium)`);
    tmp = await mkdtemp(join(tmpdir(), 'wharf-browser-'));
    await mkdir(SHOTS, { recursive: true });
    context = await chromium.launchPersistentContext(join(tmp, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      acceptDownloads: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await context?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test('upload page: pick two, drop one, size, percent and speed to 100%, names as uploaded, an error inside its card, links, previews, unload', async (t) => {
    const dataDir = join(tmp, 'upload-data');
    const app = await startExample('upload-page/server.mjs', { WHARF_DATA_DIR: dataDir, WHARF_LIMIT_FILE_SIZE: String(4 * 1024 * 1024) });
    defer(t, () => app.stop());
    const page = await context.newPage();
    defer(t, () => page.close());

    // A real PNG (from the live-stream example's encoder) and a tiny but valid PDF.
    const { bouncingSquare } = (await import(join(ROOT, 'examples/live-stream/png.mjs'))) as { bouncingSquare: (n: number) => Buffer };
    const png = bouncingSquare(5);
    const pdf = Buffer.from('%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj 3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n');
    const blob = randomBytes(3 * 1024 * 1024 + 17);

    await page.goto(app.url + '/');
    assert.match(page.url(), /\/page\/index\.html$/);
    const tooBig = `${'a-very-long-file-name-without-any-space-'.repeat(5)}.bin`;
    await page.setInputFiles('#picker', [
      { name: 'square.png', mimeType: 'image/png', buffer: png },
      { name: 'report.pdf', mimeType: 'application/pdf', buffer: pdf },
      { name: '100% sûr.txt', mimeType: 'text/plain', buffer: Buffer.from('sure') },
      { name: tooBig, mimeType: 'application/octet-stream', buffer: randomBytes(5 * 1024 * 1024) },
    ]);
    // Drag and drop, as the browser does it: a DataTransfer carrying a File, dropped on the zone.
    await page.evaluate((base64) => {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'données été.bin', { type: 'application/octet-stream' }));
      const zone = document.getElementById('drop')!;
      zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, blob.toString('base64'));

    await page.waitForFunction(() => document.querySelectorAll('#files li[data-path]').length === 4 && document.querySelectorAll('#files li.failed').length === 1, undefined, { timeout: 30_000 });
    const items = await page.$$eval('#files li[data-path]', (lis) => lis.map((li: any) => ({ name: li.dataset.name!, path: li.dataset.path!, progress: li.dataset.progress!, shown: li.querySelector('.name').textContent, meta: li.querySelector('.meta').textContent })));
    const byName = new Map(items.map((i) => [i.name, i]));
    for (const [name, bytes] of [['square.png', png], ['report.pdf', pdf], ['données été.bin', blob]] as const) {
      const item = byName.get(name);
      assert.ok(item, `${name} listed`);
      assert.equal(item.progress, '100', `${name} progress reached 100%`);
      assert.equal(item.shown, name, 'the name shown is the name stored, decoded');
      assert.match(item.meta, /^\d+(\.\d)? (B|KiB|MiB) · 100% · \d+(\.\d)? (B|KiB|MiB|GiB)\/s$/, `${name}: size, percent, speed`);
      assert.match(item.path, /^\/_f\/[0-9a-f-]{36}\//);
      const res = await fetch(app.url + item.path);
      assert.equal(res.status, 200);
      assert.equal(sha256(new Uint8Array(await res.arrayBuffer())), sha256(bytes), `${name} fetched back intact`);
    }

    assert.match(byName.get('données été.bin')!.meta, /^3\.0 MiB · 100% · /);
    const sure = byName.get('100% sûr.txt')!;
    assert.match(sure.path, /\/100%25 sûr\.txt$/, 'the path escapes the %');
    assert.equal(sure.shown, '100% sûr.txt', 'the page shows the name, not its escape');
    // The file over the limit: the card says so, and the message stays inside the card.
    const failed = await page.$eval('#files li.failed', (li: any) => {
      const box = li.getBoundingClientRect();
      const error = li.querySelector('.error');
      const e = error.getBoundingClientRect();
      return { text: error.textContent, meta: li.querySelector('.meta').textContent, inside: e.left >= box.left && e.right <= box.right && e.bottom <= box.bottom, pageFits: document.documentElement.scrollWidth <= document.documentElement.clientWidth };
    });
    assert.match(failed.text, /over the limit|too large|limit/i);
    assert.match(failed.meta, /^5\.0 MiB · failed$/);
    assert.ok(failed.inside, 'the error is inside its card');
    assert.ok(failed.pageFits, 'nothing sticks out of the page');
    // The PNG shows inline; the PDF's frame gets application/pdf.
    await page.waitForFunction(() => document.querySelector('#files img')?.naturalWidth === 320);
    const frameSrc = await page.$eval('#files iframe', (f: any) => f.src as string);
    const pdfRes = await fetch(frameSrc);
    assert.equal(pdfRes.headers.get('content-type'), 'application/pdf');
    await page.screenshot({ path: join(SHOTS, 'upload-page.png'), fullPage: true });

    // The download link saves the file under its own name.
    const link = page.locator('#files li', { hasText: 'données été.bin' }).locator('a');
    assert.equal(await link.getAttribute('download'), 'données été.bin');
    const disposition = (await fetch(new URL((await link.getAttribute('href'))!, app.url))).headers.get('content-disposition');
    assert.equal(disposition, `attachment; filename="donn_es _t_.bin"; filename*=UTF-8''${encodeURIComponent('données été.bin')}`);
    // Under load Chromium has been seen to drop the first click's download; one more click is a user's retry.
    let download;
    for (let attempt = 0; attempt < 2 && download === undefined; attempt++) {
      [download] = await Promise.all([page.waitForEvent('download', { timeout: 15_000 }).catch(() => undefined), link.click()]);
    }
    assert.ok(download, 'the link started a download');
    assert.equal(download.suggestedFilename(), 'données été.bin');
    const saved = join(tmp, 'saved.bin');
    await download.saveAs(saved);
    assert.equal(sha256(await readFile(saved)), sha256(blob));

    // Unload goes through the host app; the file is gone afterwards.
    const gone = byName.get('report.pdf')!.path;
    await page.locator('#files li', { hasText: 'report.pdf' }).locator('button').click();
    await page.waitForFunction(() => document.querySelectorAll('#files li').length === 4);
    assert.equal((await fetch(app.url + gone)).status, 404);
  });

  test('live stream: successive frames show, the caption counts them, and says when the stream ends on unlink', async (t) => {
    const secret = randomBytes(12).toString('hex');
    const pub = await startExample('live-stream/publish.mjs', { WHARF_DATA_DIR: join(tmp, 'live-data'), WHARF_DEMO_SECRET: secret }, ['--fps', '20']);
    defer(t, () => pub.stop());
    const page = await context.newPage();
    defer(t, () => page.close());
    // Wait for the first frame to be published before the page opens the stream.
    for (let i = 0; i < 100 && !pub.output().includes('first frame published'); i++) await new Promise((r) => setTimeout(r, 50));
    await page.goto(pub.url + '/live/index.html');
    await page.waitForFunction(() => document.getElementById('view').naturalWidth === 320, undefined, { timeout: 10_000 });
    const first = await imagePixels(page, '#view');
    await page.screenshot({ path: join(SHOTS, 'live-stream-1.png') });
    await page.waitForFunction(
      (h) => {
        const el = document.getElementById('view');
        if (!el.naturalWidth) return false;
        const c = document.createElement('canvas');
        c.width = el.naturalWidth;
        c.height = el.naturalHeight;
        const ctx = c.getContext('2d')!;
        ctx.drawImage(el, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        let hash = 0;
        for (let i = 0; i < d.length; i += 4) hash = (hash * 31 + d[i]! * 7 + d[i + 1]! * 3 + d[i + 2]!) | 0;
        return hash !== h;
      },
      first.hash,
      { timeout: 10_000 },
    );
    const second = await imagePixels(page, '#view');
    await page.screenshot({ path: join(SHOTS, 'live-stream-2.png') });
    assert.equal(second.width, 320);
    assert.notEqual(second.hash, first.hash, 'the picture changed between frames');
    // The caption counts the frames as they come.
    const caption = (): Promise<string> => page.$eval('#state', (el: any) => el.textContent as string);
    const countIn = (text: string): number => Number(/^live · frame (\d+)$/.exec(text)?.[1] ?? NaN);
    const before = countIn(await caption());
    assert.ok(before >= 2, `frames counted: ${await caption()}`);
    await page.waitForFunction((n) => Number(/frame (\d+)/.exec(document.getElementById('state').textContent)?.[1]) >= n + 5, before, { timeout: 10_000 });

    // A script in the page follows the same stream; Ctrl+C on the publisher unlinks it, and the
    // browser sees the response finish with the closing delimiter while the <img> keeps its last frame.
    await page.evaluate(() => {
      window.streamEnd = (async () => {
        const res = await fetch('../_m/demo');
        const boundary = /boundary=([^;]+)/.exec(res.headers.get('content-type') ?? '')?.[1];
        const reader = res.body!.getReader();
        let tail = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          tail = (tail + new TextDecoder('latin1').decode(value)).slice(-200);
        }
        return { status: res.status, closed: boundary !== undefined && tail.endsWith(`--${boundary}--\r\n`) };
      })();
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await pub.stop(), 0);
    assert.match(pub.output(), /stream ended/);
    assert.deepEqual(await page.evaluate(() => window.streamEnd), { status: 200, closed: true });
    assert.equal((await imagePixels(page, '#view')).width, 320, 'the last frame stays on screen');
    await page.waitForFunction(() => /^stream ended after \d+ frames$/.test(document.getElementById('state').textContent), undefined, { timeout: 5_000 });
    const ended = Number(/after (\d+) frames/.exec(await caption())![1]);
    assert.ok(ended >= before + 5, `the caption says the stream ended, with its count: ${await caption()}`);
    await page.screenshot({ path: join(SHOTS, 'live-stream-ended.png') });
  });

  test('a single published frame shows at once, with no follow-up frame', async (t) => {
    const files = createFileServer({ dataDir: join(tmp, 'single-data'), accessKeys: { app: 'app-secret' } });
    const { url } = await files.listen({ port: 0, host: '127.0.0.1' });
    defer(t, () => files.close());
    const { bouncingSquare } = (await import(join(ROOT, 'examples/live-stream/png.mjs'))) as { bouncingSquare: (n: number) => Buffer };
    const site = connect(url, { accessKeyId: 'app', accessKeySecret: 'app-secret' });
    const path = await site.uplink('single', 'image/png', bouncingSquare(1));
    const page = await context.newPage();
    defer(t, () => page.close());
    await page.setContent(`<img id="one" src="${url}${path}">`);
    // With Wave's framing this never happens: Chromium waits for the next part's headers.
    await page.waitForFunction(() => document.getElementById('one').naturalWidth === 320, undefined, { timeout: 5_000 });
    await page.screenshot({ path: join(SHOTS, 'single-frame.png') });
    await site.unlink('single');
  });

  test('upload names: shown from the returned paths, followed and saved by the browser under exactly the uploaded names', async (t) => {
    // A page as a Wave app would write it: it shows each name from the path the upload returned and
    // links to that path as it is. The names carry what a URL could misread.
    const names = ['ünïcødé 名前 €.txt', 'with  spaces .txt', '100% done.txt', 'hash #1.txt', 'what?.txt', 'a+b.txt', 'semi;colon.txt', '%2e%2e%2f.txt'];
    const datas = names.map((n) => Buffer.from(`bytes of ${n}: ${randomBytes(64).toString('hex')}`));
    const dir = join(tmp, 'names-page');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'index.html'), NAMES_PAGE);
    const files = createFileServer({ dataDir: join(tmp, 'names-data'), anonymousUploads: true, publicDirs: [`/page/@${dir}`] });
    const { url } = await files.listen({ port: 0, host: '127.0.0.1' });
    defer(t, () => files.close());
    const page = await context.newPage();
    defer(t, () => page.close());

    await page.goto(`${url}/page/index.html`);
    await page.setInputFiles('#picker', names.map((name, i) => ({ name, mimeType: 'text/plain', buffer: datas[i]! })));
    await page.waitForFunction((n) => document.querySelectorAll('#files li').length === n, names.length, { timeout: 30_000 });
    const items = await page.$$eval('#files li', (lis) => lis.map((li: any) => ({ shown: li.querySelector('.open').textContent as string, raw: li.dataset.raw as string, href: li.querySelector('.open').href as string })));
    assert.deepEqual(items.map((i) => i.shown), names, 'the names shown are the names uploaded');
    for (const [i, name] of names.entries()) {
      // A page that shows the returned segment as it is (as Wave apps do) shows the name itself
      // whenever it has no %, # or ?, the only characters escaped.
      if (!/[%#?]/.test(name)) assert.equal(items[i]!.raw, name, 'the returned path ends in the name as it is');
    }
    await page.screenshot({ path: join(SHOTS, 'upload-names.png'), fullPage: true });

    // Following each link shows that file's own bytes.
    const viewer = await context.newPage();
    defer(t, () => viewer.close());
    for (const [i, item] of items.entries()) {
      const res = await viewer.goto(item.href);
      assert.equal(res?.status(), 200, item.href);
      assert.equal((await viewer.evaluate(() => document.body.innerText as string)).trimEnd(), datas[i]!.toString(), names[i]);
    }

    // Saving through each kind of link: the browser's name and the bytes are the uploaded ones.
    for (const [i, name] of names.entries()) {
      for (const kind of ['save', 'attach', 'bare']) {
        const link = page.locator(`#files li:nth-child(${i + 1}) .${kind}`);
        let download;
        for (let attempt = 0; attempt < 2 && download === undefined; attempt++) {
          [download] = await Promise.all([page.waitForEvent('download', { timeout: 15_000 }).catch(() => undefined), link.click()]);
        }
        assert.ok(download, `${kind} ${name}: a download started`);
        assert.equal(download.suggestedFilename(), chromiumSaves(name, kind), `${kind}: saved under the uploaded name`);
        const saved = join(tmp, `saved-${kind}-${i}`);
        await download.saveAs(saved);
        assert.equal(sha256(await readFile(saved)), sha256(datas[i]!), `${kind} ${name}: bytes`);
      }
    }
  });

  test("uploads: an end user's never runs script on the origin (navigated, framed, embedded, as a script, module or worker); the app's keyed bundle does", async (t) => {
    const root = join(tmp, 'trust');
    const pageDir = join(root, 'page');
    const appDir = join(root, 'app');
    const userDir = join(root, 'user');
    for (const d of [pageDir, join(appDir, 'bundle'), join(appDir, 'site-bundle'), join(userDir, 'bundle')]) await mkdir(d, { recursive: true });
    // Every script announces itself by fetching /ran/<tag>: the requests the browser makes are the record of what ran.
    const ran = (tag: string): string => `fetch('/ran/${tag}?' + encodeURIComponent(document.cookie));`;
    const ranInWorker = (tag: string): string => `fetch('/ran/${tag}');`;
    // The app's trusted page (a public mapping): it loads whatever its fragment lists, as a page of
    // the origin under attack would if it were tricked into pointing at an end user's upload.
    await writeFile(join(pageDir, 'host.html'), '<!doctype html><title>host</title><script src="host.js" defer></script>');
    await writeFile(join(pageDir, 'host.js'), `
      window.images = {};
      for (const [kind, src] of JSON.parse(decodeURIComponent(location.hash.slice(1)))) {
        if (kind === 'worker') { try { new Worker(src); } catch {} continue; }
        if (kind === 'module-worker') { try { new Worker(src, { type: 'module' }); } catch {} continue; }
        const el = document.createElement(kind === 'module' ? 'script' : kind);
        if (kind === 'script') el.src = src;
        if (kind === 'module') { el.type = 'module'; el.src = src; }
        if (kind === 'iframe' || kind === 'embed') el.src = src;
        if (kind === 'object') el.data = src;
        if (kind === 'img') { el.src = src; el.onload = () => { window.images[src] = el.naturalWidth; }; }
        document.body.append(el);
      }`);
    const svg = (tag: string): string => `<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><rect width="20" height="20" fill="red"/><script>${ran(tag)}</script></svg>`;
    const userFiles: Record<string, string> = {
      'evil.html': `<!doctype html><script>${ran('user-html')}</script>`,
      'evil.svg': svg('user-svg'),
      'evil.xml': `<?xml version="1.0"?><r xmlns:h="http://www.w3.org/1999/xhtml"><h:script>${ran('user-xml')}</h:script></r>`,
      'evil.js': ran('user-js'),
      'evil.mjs': ran('user-mjs'),
      'evil-worker.js': ranInWorker('user-worker'),
      'evil-module-worker.mjs': ranInWorker('user-module-worker'),
    };
    for (const [name, text] of Object.entries(userFiles)) await writeFile(join(userDir, name), text);
    await writeFile(join(userDir, 'bundle', 'index.html'), '<!doctype html><script src="app.js"></script>');
    await writeFile(join(userDir, 'bundle', 'app.js'), ran('user-bundle'));
    await writeFile(join(appDir, 'bundle', 'index.html'), '<!doctype html><script src="app.js"></script>');
    await writeFile(join(appDir, 'bundle', 'app.js'), ran('app-bundle'));
    await writeFile(join(appDir, 'site-bundle', 'index.html'), '<!doctype html><script src="js/app.js"></script>');
    await mkdir(join(appDir, 'site-bundle', 'js'));
    await writeFile(join(appDir, 'site-bundle', 'js', 'app.js'), ran('site-bundle'));
    await writeFile(join(appDir, 'good.js'), ran('app-js'));
    await writeFile(join(appDir, 'good.mjs'), ran('app-mjs'));
    await writeFile(join(appDir, 'good-worker.js'), ranInWorker('app-worker'));
    await writeFile(join(appDir, 'good.svg'), svg('app-svg'));

    const files = createFileServer({ dataDir: join(root, 'data'), publicDirs: [`/page/@${pageDir}`], anonymousUploads: true, accessKeys: { app: 'app-secret' }, warn: () => {} });
    const { url } = await files.listen({ port: 0, host: '127.0.0.1' });
    defer(t, () => files.close());
    // End users: anonymous uploads from a browser-like client, no key.
    const anonymous = async (names: string[], dir: string, directory = false): Promise<string[]> => {
      const form = new FormData();
      for (const name of names) form.append('files', new Blob([await readFile(join(dir, name))]), name);
      const res = await fetch(`${url}/_f/`, { method: 'POST', body: form, headers: directory ? { 'Wave-Directory-Upload': 'True' } : {} });
      assert.equal(res.status, 200);
      return ((await res.json()) as { files: string[] }).files;
    };
    const userPaths = Object.fromEntries((await anonymous(Object.keys(userFiles), userDir)).map((p) => [p.slice(p.lastIndexOf('/') + 1), p]));
    const [userBundle] = await anonymous(['index.html', 'app.js'], join(userDir, 'bundle'), true);
    // The app: its own key over HTTP (Wave's upload_dir), and in process.
    const app = connect(url, { accessKeyId: 'app', accessKeySecret: 'app-secret' });
    const [appBundle] = await app.uploadDir(join(appDir, 'bundle'));
    const [siteBundle] = await files.site.uploadDir(join(appDir, 'site-bundle'));
    const [goodJs, goodMjs, goodWorker, goodSvg] = await app.upload(['good.js', 'good.mjs', 'good-worker.js', 'good.svg'].map((n) => join(appDir, n)));

    const seen = new Set<string>();
    const onRequest = (r: { url(): string }): void => {
      const m = /\/ran\/([\w-]+)/.exec(r.url());
      if (m) seen.add(m[1]!);
    };
    context.on('request', onRequest);
    defer(t, () => context.off('request', onRequest));
    await context.addCookies([{ name: 'session', value: 'victim-secret', url }]);
    const page = await context.newPage();
    defer(t, () => page.close());
    const waitFor = async (tags: string[]): Promise<void> => {
      for (let i = 0; i < 300 && !tags.every((tag) => seen.has(tag)); i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(tags.filter((tag) => !seen.has(tag)), [], 'the app\'s own scripts ran');
    };
    const userRan = (): string[] => [...seen].filter((tag) => tag.startsWith('user-'));

    // 1. From the app's trusted page: every way a page can load an end user's upload, beside the same
    // ways to load the app's own (which must run: the checks below are not vacuous).
    const vectors: Array<[string, string]> = [
      ['script', userPaths['evil.js']!], ['module', userPaths['evil.mjs']!],
      ['worker', userPaths['evil-worker.js']!], ['module-worker', userPaths['evil-module-worker.mjs']!],
      ['script', userPaths['evil.svg']!], ['script', userPaths['evil.html']!],
      ['iframe', userPaths['evil.html']!], ['iframe', userPaths['evil.svg']!], ['iframe', userPaths['evil.xml']!], ['iframe', `${userBundle}/index.html`],
      ['object', userPaths['evil.html']!], ['object', userPaths['evil.svg']!], ['embed', userPaths['evil.svg']!], ['embed', userPaths['evil.xml']!],
      ['img', userPaths['evil.svg']!], ['img', goodSvg!],
      ['script', goodJs!], ['module', goodMjs!], ['worker', goodWorker!], ['iframe', `${appBundle}/index.html`],
    ];
    await page.goto(`${url}/page/host.html#${encodeURIComponent(JSON.stringify(vectors))}`);
    await waitFor(['app-js', 'app-mjs', 'app-worker', 'app-bundle']);
    // An end user's SVG still shows as an image (an image never runs script), like the app's.
    await page.waitForFunction((src) => window.images[src] === 20, userPaths['evil.svg']!, { timeout: 10_000 });
    assert.equal(await page.evaluate((src) => window.images[src], goodSvg!), 20);
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(userRan(), [], 'no end user\'s script ran from the trusted page');
    await page.screenshot({ path: join(SHOTS, 'trust-host.png') });

    // 2. Navigated to: an end user's document is saved, never rendered; the app's bundles render and run.
    for (const path of [userPaths['evil.html']!, userPaths['evil.svg']!, userPaths['evil.xml']!, `${userBundle}/index.html`]) {
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), page.goto(url + path).catch(() => undefined)]);
      assert.equal(download.suggestedFilename(), path.slice(path.lastIndexOf('/') + 1));
      await download.delete();
    }
    await page.goto(`${url}${siteBundle}/index.html`);
    await waitFor(['site-bundle']);
    await page.goto(`${url}${appBundle}/index.html`);
    assert.equal(await page.evaluate(() => document.contentType), 'text/html');
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(userRan(), [], 'no end user\'s script ran when navigated to');
  });

  test('CORS: a page on another port uploads with its key, downloads with ranges, shows the stream; a page on an origin not allowed stores nothing', async (t) => {
    const root = join(tmp, 'cors');
    const pageDir = join(root, 'page');
    await mkdir(pageDir, { recursive: true });
    await writeFile(join(pageDir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>front end</title><img id="view">');
    // Two front ends on ports of their own (the dev server of an app, say): one allowed, one not.
    const front = createFileServer({ dataDir: join(root, 'front-data'), publicDirs: [`/@${pageDir}`] });
    const stranger = createFileServer({ dataDir: join(root, 'stranger-data'), publicDirs: [`/@${pageDir}`] });
    const frontUrl = (await front.listen({ port: 0, host: '127.0.0.1' })).url;
    const strangerUrl = (await stranger.listen({ port: 0, host: '127.0.0.1' })).url;
    defer(t, () => Promise.all([front.close(), stranger.close()]));
    // The page holds a key its app gave it and sends it itself (`Authorization`, so every upload is
    // preflighted): no cookie, no credentials mode.
    const dataDir = join(root, 'data');
    // Anonymous uploads on: without CORS, the stranger's simple POST below would be stored.
    // In the middleware mode of a host server that notes what it answered.
    const files = createFileServer({ dataDir, accessKeys: { page: 'page-secret' }, anonymousUploads: true, cors: { origins: [frontUrl] } });
    const answered: string[] = [];
    const api = createServer((req, res) => {
      res.on('finish', () => answered.push(`${req.method} ${req.url} ${res.statusCode}`));
      files.handle(req, res);
    });
    await new Promise<void>((ok) => api.listen(0, '127.0.0.1', ok));
    const url = `http://127.0.0.1:${(api.address() as { port: number }).port}`;
    defer(t, async () => {
      await files.close();
      api.closeAllConnections();
      await new Promise((ok) => api.close(ok));
    });
    const auth = `Basic ${Buffer.from('page:page-secret').toString('base64')}`;
    const { bouncingSquare } = (await import(join(ROOT, 'examples/live-stream/png.mjs'))) as { bouncingSquare: (n: number) => Buffer };
    await connect(url, { accessKeyId: 'page', accessKeySecret: 'page-secret' }).uplink('cam', 'image/png', bouncingSquare(2));
    const page = await context.newPage();
    defer(t, () => page.close());
    const upload = (api: string, key: string | undefined): Promise<unknown> => page.evaluate(async ({ api, key }) => {
      const body = new FormData();
      body.append('files', new File(['hello from another origin'], 'hello.txt', { type: 'text/plain' }));
      try {
        const res = await fetch(`${api}/_f/`, { method: 'POST', body, headers: key === undefined ? {} : { Authorization: key } });
        return { status: res.status, json: await res.json() };
      } catch (err) {
        return { failed: String(err) };
      }
    }, { api, key });

    // Not allowed: the preflighted upload never goes out, and the simple one (no header: no
    // preflight) is refused on its headers; nothing reaches the data dir either way.
    // A read starts the upload storage, so the data dir is there to be looked at.
    assert.equal((await fetch(`${url}/_f/0b4bd0b6-4f7e-4a53-9d1b-2a2cf2a5f0f0/none`)).status, 404);
    assert.deepEqual(await layout(dataDir), ['.wharf-tmp/', 'f/']);
    await page.goto(`${strangerUrl}/index.html`);
    assert.match(JSON.stringify(await upload(url, auth)), /"failed":"TypeError: Failed to fetch"/);
    assert.match(JSON.stringify(await upload(url, undefined)), /"failed":"TypeError: Failed to fetch"/);
    assert.deepEqual(answered.filter((a) => a.includes(' /_f/ ')), ['OPTIONS /_f/ 403', 'POST /_f/ 403'], 'the preflight refused; the simple POST reached the server and was refused there');
    assert.deepEqual(await layout(dataDir), ['.wharf-tmp/', 'f/'], 'nothing stored, nothing staged');

    // Allowed: the upload goes through its preflight, the page reads the answer and the file.
    await page.goto(`${frontUrl}/index.html`);
    const done = await upload(url, auth) as { status: number; json: { files: string[] } };
    assert.equal(done.status, 200);
    const [path] = done.json.files;
    assert.match(path!, /^\/_f\/[0-9a-f-]{36}\/hello\.txt$/);
    const read = await page.evaluate(async (href) => {
      const res = await fetch(href, { headers: { Range: 'bytes=6-9' } });
      const whole = await fetch(`${href}?download`);
      return {
        status: res.status, text: await res.text(), range: res.headers.get('content-range'), etag: res.headers.get('etag'),
        disposition: whole.headers.get('content-disposition'), length: whole.headers.get('content-length'),
      };
    }, url + path);
    assert.deepEqual({ ...read, etag: typeof read.etag }, {
      status: 206, text: 'from', range: 'bytes 6-9/25', etag: 'string', disposition: 'attachment; filename="hello.txt"', length: '25',
    });
    // The stream: an <img> needs no CORS; a script reading it does, and gets its parts.
    await page.evaluate((src) => { document.getElementById('view').src = src; }, `${url}/_m/cam`);
    await page.waitForFunction(() => document.getElementById('view').naturalWidth === 320, undefined, { timeout: 10_000 });
    const part = await page.evaluate(async (src) => {
      const res = await fetch(src);
      const reader = res.body!.getReader();
      let head = '';
      while (!head.includes('image/png')) head += new TextDecoder('latin1').decode((await reader.read()).value);
      await reader.cancel();
      return { type: res.headers.get('content-type')?.split(';')[0], head: head.includes('Content-Type: image/png') };
    }, `${url}/_m/cam`);
    assert.deepEqual(part, { type: 'multipart/x-mixed-replace', head: true });
    await page.screenshot({ path: join(SHOTS, 'cors.png') });
  });

  test('express example: wharf behind the app\'s own session', async (t) => {
    const app = await startExample('express/app.mjs', { WHARF_DATA_DIR: join(tmp, 'express-data') });
    defer(t, () => app.stop());
    const page = await context.newPage();
    defer(t, () => page.close());
    await context.clearCookies();

    // Without a session: the app's page offers sign-in, and wharf refuses uploads.
    await page.goto(app.url + '/');
    assert.equal(await page.locator('button', { hasText: 'Sign in' }).count(), 1);
    const anonymous = await page.evaluate(async () => {
      const form = new FormData();
      form.append('files', new File(['x'], 'x.txt'));
      return (await fetch('/_f/', { method: 'POST', body: form })).status;
    });
    assert.equal(anonymous, 401);
    assert.equal((await fetch(app.url + '/no-such-route')).status, 404, "the app's own 404 after wharf's next()");

    // With a session: the form uploads, and the file reads back in the same session only.
    await page.locator('button', { hasText: 'Sign in' }).click();
    await page.waitForSelector('input[type=file]');
    const body = randomBytes(4096);
    await page.setInputFiles('input[type=file]', { name: 'notes.bin', mimeType: 'application/octet-stream', buffer: body });
    const [response] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/_f/')), page.locator('button', { hasText: 'Upload' }).click()]);
    assert.equal(response.status(), 200);
    const { files } = (await response.json()) as { files: string[] };
    assert.equal(files.length, 1);
    // The page stays in the app and lists the upload as a link named after the file.
    await page.waitForSelector('#uploaded a');
    assert.equal(page.url(), `${app.url}/`);
    assert.equal(await page.locator('#state').textContent(), '1 uploaded');
    assert.deepEqual(await page.$$eval('#uploaded a', (as) => as.map((a: any) => [a.textContent, a.getAttribute('href')])), [['notes.bin', files[0]]]);
    // A second upload adds its link under the first; a name a URL escapes shows as it was.
    await page.setInputFiles('input[type=file]', { name: '100% done.txt', mimeType: 'text/plain', buffer: Buffer.from('done') });
    await page.locator('button', { hasText: 'Upload' }).click();
    await page.waitForFunction(() => document.querySelectorAll('#uploaded a').length === 2);
    assert.equal(await page.locator('#uploaded li:nth-child(2) a').textContent(), '100% done.txt');
    const [opened] = await Promise.all([page.waitForResponse((r) => r.url().includes('/_f/') && r.request().method() === 'GET'), page.locator('#uploaded li:nth-child(2) a').click()]);
    assert.equal(opened.status(), 200, 'the link opens the file in the session');
    assert.equal(await opened.text(), 'done');
    await page.goBack();
    const inSession = await page.evaluate(async (p) => {
      const r = await fetch(p);
      return { status: r.status, bytes: [...new Uint8Array(await r.arrayBuffer())] as number[] };
    }, files[0]!);
    assert.equal(inSession.status, 200);
    assert.equal(sha256(Uint8Array.from(inSession.bytes)), sha256(body));
    await page.screenshot({ path: join(SHOTS, 'express.png') });
    assert.equal((await fetch(app.url + files[0]!)).status, 401, 'no session, no file');
  });
});

