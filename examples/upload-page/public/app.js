// Vanilla JS: one XHR per file (XHR, unlike fetch, reports upload progress), each in a card with
// its size, percent and speed while it goes, then the name it was stored under and its links.
const list = document.getElementById('files');
const drop = document.getElementById('drop');
const picker = document.getElementById('picker');

picker.addEventListener('change', () => { uploadAll(picker.files); picker.value = ''; });
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  uploadAll(e.dataTransfer.files);
});

function uploadAll(fileList) {
  for (const file of fileList) upload(file);
}

/** 1536 -> "1.5 KiB": sizes as a person reads them. */
function size(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes;
  let u = 0;
  while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; }
  return `${u === 0 ? Math.round(n) : n.toFixed(n < 10 ? 1 : 0)} ${units[u]}`;
}

/** The name a returned path ends in, as a person reads it (`100%25 done.txt` is `100% done.txt`). */
function nameOf(path) {
  const raw = path.slice(path.lastIndexOf('/') + 1);
  try { return decodeURIComponent(raw); } catch { return raw; }
}

function upload(file) {
  const item = document.createElement('li');
  item.dataset.name = file.name;
  const row = document.createElement('div');
  row.className = 'row';
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = file.name;
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = `${size(file.size)} · waiting`;
  const bar = document.createElement('progress');
  bar.max = file.size || 1;
  bar.value = 0;
  row.append(name, meta);
  item.append(row, bar);
  list.append(item);

  const form = new FormData();
  form.append('files', file, file.name);
  const xhr = new XMLHttpRequest();
  const started = performance.now();
  xhr.open('POST', '../_f/');
  xhr.upload.addEventListener('progress', (e) => {
    const total = e.total || file.size || 1;
    const percent = Math.round((100 * e.loaded) / total);
    const seconds = (performance.now() - started) / 1000;
    bar.max = total;
    bar.value = e.loaded;
    item.dataset.progress = String(percent);
    meta.textContent = `${size(file.size)} · ${percent}% · ${seconds > 0 ? size(e.loaded / seconds) : '—'}/s`;
  });
  xhr.addEventListener('load', () => {
    let answer;
    try { answer = JSON.parse(xhr.responseText); } catch { answer = {}; }
    if (xhr.status !== 200) return fail(item, meta, answer.message || `upload failed (HTTP ${xhr.status})`);
    bar.value = bar.max;
    item.dataset.progress = '100';
    const seconds = (performance.now() - started) / 1000;
    meta.textContent = `${size(file.size)} · 100% · ${size(file.size / Math.max(seconds, 0.001))}/s`;
    show(item, row, name, file, answer.files[0]);
  });
  xhr.addEventListener('error', () => fail(item, meta, 'network error: the server could not be reached'));
  xhr.send(form);
}

function show(item, row, name, file, path) {
  item.dataset.path = path;
  name.textContent = nameOf(path);
  const link = document.createElement('a');
  link.href = path + '?download';
  link.download = nameOf(path);
  link.textContent = 'download';
  const remove = document.createElement('button');
  remove.textContent = 'unload';
  remove.addEventListener('click', async () => {
    const res = await fetch('/app/unload', { method: 'POST', body: JSON.stringify({ path }) });
    if (res.ok) item.remove();
    else fail(item, undefined, (await res.json()).message);
  });
  row.append(link, remove);
  if (file.type.startsWith('image/')) {
    const img = document.createElement('img');
    img.src = path;
    img.alt = nameOf(path);
    item.append(img);
  } else if (file.type === 'application/pdf') {
    const frame = document.createElement('iframe');
    frame.src = path;
    frame.title = nameOf(path);
    item.append(frame);
  }
}

function fail(item, meta, message) {
  item.classList.add('failed');
  if (meta) meta.textContent = meta.textContent.replace(/ · .*$/, ' · failed');
  const p = document.createElement('p');
  p.className = 'error';
  p.setAttribute('role', 'alert');
  p.textContent = message;
  item.append(p);
}
