// Vanilla JS: one XHR per file (XHR, unlike fetch, reports upload progress), a progress bar each.
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

function upload(file) {
  const item = document.createElement('li');
  item.dataset.name = file.name;
  const row = document.createElement('div');
  row.className = 'row';
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = file.name;
  const bar = document.createElement('progress');
  bar.max = file.size || 1;
  bar.value = 0;
  row.append(name);
  item.append(row, bar);
  list.append(item);

  const form = new FormData();
  form.append('files', file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open('POST', '../_f/');
  xhr.upload.addEventListener('progress', (e) => {
    bar.max = e.total || 1;
    bar.value = e.loaded;
    item.dataset.progress = String(Math.round((100 * e.loaded) / (e.total || 1)));
  });
  xhr.addEventListener('load', () => {
    let answer;
    try { answer = JSON.parse(xhr.responseText); } catch { answer = {}; }
    if (xhr.status !== 200) return fail(item, answer.message || `upload failed (${xhr.status})`);
    bar.value = bar.max;
    item.dataset.progress = '100';
    show(item, row, file, answer.files[0]);
  });
  xhr.addEventListener('error', () => fail(item, 'network error'));
  xhr.send(form);
}

function show(item, row, file, path) {
  item.dataset.path = path;
  const link = document.createElement('a');
  link.href = path + '?download';
  link.download = file.name;
  link.textContent = 'download';
  const remove = document.createElement('button');
  remove.textContent = 'unload';
  remove.addEventListener('click', async () => {
    const res = await fetch('/app/unload', { method: 'POST', body: JSON.stringify({ path }) });
    if (res.ok) item.remove();
    else fail(item, (await res.json()).message);
  });
  row.append(link, remove);
  if (file.type.startsWith('image/')) {
    const img = document.createElement('img');
    img.src = path;
    img.alt = file.name;
    item.append(img);
  } else if (file.type === 'application/pdf') {
    const frame = document.createElement('iframe');
    frame.src = path;
    frame.title = file.name;
    item.append(frame);
  }
}

function fail(item, message) {
  const p = document.createElement('p');
  p.className = 'error';
  p.textContent = message;
  item.append(p);
}
