/**
 * The explorer page. It computes through an `Explorer` (explorer.ts): a folder written by
 * `probsem export-web` (the HTML carries a `probsem-site` meta tag) is computed in the tab; under
 * `probsem serve` the model also runs in the tab, and the server answers what needs its data
 * (hybrid.ts; `?compute=server` sends every call there). No requests go anywhere else.
 */
import { detectPolarity } from '../../src/data/polarity.js';
import type { LabelScore, LatentMethod, LatentResponse } from '../../src/server/types.js';
import { colour } from './colours.js';
import { type Explorer, scaleFor } from './explorer.js';
import type { LocalExplorer } from './local.js';
import { RemoteExplorer } from './remote.js';

// A server started with a token is opened as http://HOST:PORT/#token=TOKEN: the token goes into a
// same-site cookie, which every API call and <img> then carries, and out of the address bar.
{
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    document.cookie = `probsem_token=${encodeURIComponent(decodeURIComponent(m[1]))}; path=/; SameSite=Strict`;
    history.replaceState(null, '', location.pathname + location.search);
  }
}

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el as T;
}

let ex: Explorer;

function showError(e: unknown, where?: HTMLElement): void {
  const msg = e instanceof Error ? e.message : String(e);
  if (where) {
    where.textContent = msg;
    where.classList.add('error');
  } else {
    const el = $('error');
    el.textContent = msg;
    el.hidden = false;
  }
}

function renderBars(el: HTMLElement, labels: LabelScore[]): void {
  el.replaceChildren(
    ...labels.map((l) => {
      const row = document.createElement('div');
      row.className = 'bar';
      row.dataset.label = l.label;
      const name = document.createElement('span');
      name.textContent = l.label;
      const track = document.createElement('div');
      track.className = 'track';
      const fill = document.createElement('div');
      fill.className = 'fill';
      fill.style.width = `${(100 * l.probability).toFixed(1)}%`;
      track.append(fill);
      const pct = document.createElement('span');
      pct.className = 'pct';
      pct.textContent = `${(100 * l.probability).toFixed(1)}%`;
      row.append(name, track, pct);
      return row;
    }),
  );
}

function figure(src: string, caption: string, cls?: string): HTMLElement {
  const f = document.createElement('figure');
  if (cls) f.className = cls;
  const img = document.createElement('img');
  img.src = src;
  img.alt = caption;
  const c = document.createElement('figcaption');
  c.textContent = caption;
  f.append(img, c);
  return f;
}

// ---------------------------------------------------------------- latent map

interface MapState {
  data: LatentResponse;
  /** Canvas (CSS pixel) positions. */
  px: Float32Array;
  py: Float32Array;
}
let mapState: MapState | null = null;
let mapRequest = 0;

/** The map is drawn on a 520-unit square; CSS shrinks it to narrow screens. */
const MAP_SIZE = 520;

/** Canvas units per CSS pixel of the map as shown (1 at full size, more on a phone). */
function mapScale(canvas: HTMLCanvasElement): number {
  return MAP_SIZE / (canvas.getBoundingClientRect().width || MAP_SIZE);
}

function drawMap(data: LatentResponse, highlight = -1): void {
  const canvas = $<HTMLCanvasElement>('map');
  const css = MAP_SIZE;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = css * dpr;
  canvas.height = css * dpr;
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, css, css);
  const pad = 14;
  const minX = Math.min(...data.x);
  const maxX = Math.max(...data.x);
  const minY = Math.min(...data.y);
  const maxY = Math.max(...data.y);
  const span = Math.max(maxX - minX, maxY - minY) || 1;
  const s = (css - 2 * pad) / span;
  const ox = pad + (css - 2 * pad - (maxX - minX) * s) / 2;
  const oy = pad + (css - 2 * pad - (maxY - minY) * s) / 2;
  const px = new Float32Array(data.x.length);
  const py = new Float32Array(data.x.length);
  for (let i = 0; i < data.x.length; i++) {
    px[i] = ox + (data.x[i] - minX) * s;
    py[i] = css - (oy + (data.y[i] - minY) * s);
    ctx.fillStyle = colour(data.labels[i]);
    ctx.globalAlpha = 0.75;
    ctx.beginPath();
    ctx.arc(px[i], py[i], 2.6, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  if (highlight >= 0) {
    ctx.strokeStyle = '#000';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(px[highlight], py[highlight], 7, 0, 2 * Math.PI);
    ctx.stroke();
  }
  mapState = { data, px, py };
}

function nearest(x: number, y: number, radius = 8): number {
  if (!mapState) return -1;
  let best = -1;
  let bd = radius * radius;
  for (let i = 0; i < mapState.px.length; i++) {
    const d = (mapState.px[i] - x) ** 2 + (mapState.py[i] - y) ** 2;
    if (d <= bd) {
      bd = d;
      best = i;
    }
  }
  return best;
}

async function loadMap(method: LatentMethod): Promise<void> {
  const req = ++mapRequest;
  const status = $('map-status');
  status.classList.remove('error');
  status.textContent = `computing the ${method.toUpperCase()} map…`;
  try {
    const data = await ex.latent(method);
    if (req !== mapRequest) return;
    drawMap(data);
    status.textContent = `${data.ids.length} test images; computed in ${data.seconds.toFixed(1)} s`;
  } catch (e) {
    if (req === mapRequest) showError(e, status);
  }
}

async function showDetail(i: number): Promise<void> {
  if (!mapState) return;
  const id = mapState.data.ids[i];
  drawMap(mapState.data, i);
  const detail = $('detail');
  detail.hidden = false;
  $<HTMLImageElement>('detail-original').src = ex.imageSrc(id, scaleFor(ex.info, 112));
  $('detail-id').textContent = String(id);
  $('detail-label').textContent = mapState.data.classes[mapState.data.labels[i]];
  try {
    const r = await ex.annotateId(id, { reconstruct: true, top: 5 });
    if (r.reconstruction) $<HTMLImageElement>('detail-recon').src = r.reconstruction;
    renderBars($('detail-bars'), r.labels);
  } catch (e) {
    showError(e, $('detail-bars'));
  }
}

function setupMap(classes: string[]): void {
  const canvas = $<HTMLCanvasElement>('map');
  const tip = $('tooltip');
  $('legend').replaceChildren(
    ...classes.map((c, i) => {
      const li = document.createElement('li');
      const dot = document.createElement('span');
      dot.style.background = colour(i);
      li.append(dot, c);
      return li;
    }),
  );
  let shown = -1;
  canvas.addEventListener('mousemove', (ev) => {
    const r = canvas.getBoundingClientRect();
    const k = mapScale(canvas);
    const i = nearest((ev.clientX - r.left) * k, (ev.clientY - r.top) * k);
    if (i < 0 || !mapState) {
      tip.hidden = true;
      shown = -1;
      return;
    }
    if (i !== shown) {
      shown = i;
      const id = mapState.data.ids[i];
      const img = document.createElement('img');
      img.src = ex.imageSrc(id, scaleFor(ex.info, 84));
      img.alt = `image ${id}`;
      const cap = document.createElement('div');
      cap.textContent = `#${id} ${mapState.data.classes[mapState.data.labels[i]]}`;
      tip.replaceChildren(img, cap);
    }
    tip.hidden = false;
    tip.style.left = `${Math.max(0, Math.min(mapState.px[i] / k + 10, r.width - 96))}px`;
    tip.style.top = `${Math.max(mapState.py[i] / k - 110, 0)}px`;
  });
  canvas.addEventListener('mouseleave', () => {
    tip.hidden = true;
    shown = -1;
  });
  canvas.addEventListener('click', (ev) => {
    const r = canvas.getBoundingClientRect();
    const k = mapScale(canvas);
    const i = nearest((ev.clientX - r.left) * k, (ev.clientY - r.top) * k);
    if (i >= 0) void showDetail(i);
  });
  const sel = $<HTMLSelectElement>('map-method');
  sel.addEventListener('change', () => void loadMap(sel.value as LatentMethod));
  void loadMap(sel.value as LatentMethod);
}

// ---------------------------------------------------------------- words

function setupWords(): void {
  const form = $<HTMLFormElement>('words-form');
  const input = $<HTMLInputElement>('words');
  const status = $('words-status');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const words = input.value.trim();
    if (!words) return;
    status.classList.remove('error');
    status.textContent = 'working…';
    try {
      const [gen, ret] = await Promise.all([
        ex.generate(words, 8, 0),
        ex.retrieve(words, 8),
      ]);
      $('generated').replaceChildren(...gen.images.map((src, i) => figure(src, `sample ${i + 1}`, 'generated')));
      $('retrieved').replaceChildren(...ret.results.map((h) => figure(h.src, `${h.label} · KL ${h.kl.toFixed(1)}`, 'retrieved')));
      status.textContent = `query: ${gen.labels.join(' + ')}`;
    } catch (e) {
      $('generated').replaceChildren();
      $('retrieved').replaceChildren();
      showError(e, status);
    }
  });
}

// ---------------------------------------------------------------- draw / drop / annotate

function setupAnnotate(): void {
  const canvas = $<HTMLCanvasElement>('draw');
  const { height, width, channels } = ex.info.image;
  // The drawing area has the images' shape; colour runs take pictures as they are (no polarity
  // guess), drawn dark on white like most colour pictures.
  canvas.height = Math.round((canvas.width * height) / width);
  canvas.style.aspectRatio = `${width} / ${height}`;
  const colour = channels === 3;
  const ctx = canvas.getContext('2d')!;
  const invert = $<HTMLInputElement>('invert');
  invert.closest('label')!.hidden = colour;
  const out = $('annotation');
  const clear = () => {
    ctx.fillStyle = colour ? '#fff' : '#000';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();

  let pending = 0;
  const annotate = async () => {
    const req = ++pending;
    try {
      const r = await ex.annotateCanvas(canvas, invert.checked);
      if (req === pending) renderBars(out, r.labels);
    } catch (e) {
      if (req === pending) showError(e, out);
    }
  };

  let drawing = false;
  const pos = (ev: PointerEvent) => {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) * canvas.width) / r.width, ((ev.clientY - r.top) * canvas.height) / r.height] as const;
  };
  canvas.addEventListener('pointerdown', (ev) => {
    drawing = true;
    canvas.setPointerCapture(ev.pointerId);
    const [x, y] = pos(ev);
    ctx.strokeStyle = colour || invert.checked ? '#000' : '#fff';
    ctx.lineWidth = 22;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(x, y);
  });
  canvas.addEventListener('pointermove', (ev) => {
    if (!drawing) return;
    const [x, y] = pos(ev);
    ctx.lineTo(x, y);
    ctx.stroke();
  });
  canvas.addEventListener('pointerup', () => {
    if (!drawing) return;
    drawing = false;
    void annotate();
  });

  const showFile = async (file: File) => {
    if (!/^image\/(png|jpeg)$/.test(file.type)) {
      showError(new Error(`${file.name || 'the file'} is not a PNG or JPEG picture`), out);
      return;
    }
    try {
      // The browser decodes the picture; it is fitted into the square and sent as PNG.
      const bmp = await createImageBitmap(file);
      clear();
      const s = Math.min(canvas.width / bmp.width, canvas.height / bmp.height);
      const w = bmp.width * s;
      const h = bmp.height * s;
      // Light pictures on dark backgrounds are what the models know: the CLI's and server's guess.
      const probe = document.createElement('canvas');
      probe.width = bmp.width;
      probe.height = bmp.height;
      const pctx = probe.getContext('2d')!;
      pctx.drawImage(bmp, 0, 0);
      const px = pctx.getImageData(0, 0, bmp.width, bmp.height).data;
      const grey = new Float32Array(bmp.width * bmp.height);
      for (let i = 0; i < grey.length; i++) grey[i] = (px[i * 4] + px[i * 4 + 1] + px[i * 4 + 2]) / 765;
      invert.checked = !colour && detectPolarity(grey, bmp.height, bmp.width).polarity === 'dark-on-light';
      if (colour || invert.checked) {
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, canvas.width, canvas.height);
      }
      ctx.drawImage(bmp, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
      await annotate();
    } catch (e) {
      showError(e, out);
    }
  };
  canvas.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    canvas.classList.add('over');
  });
  canvas.addEventListener('dragleave', () => canvas.classList.remove('over'));
  canvas.addEventListener('drop', (ev) => {
    ev.preventDefault();
    canvas.classList.remove('over');
    const f = ev.dataTransfer?.files[0];
    if (f) void showFile(f);
  });
  $<HTMLInputElement>('file').addEventListener('change', (ev) => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    if (f) void showFile(f);
  });
  $('clear').addEventListener('click', () => {
    clear();
    out.replaceChildren();
  });
  invert.addEventListener('change', () => void annotate());
}

// ---------------------------------------------------------------- interpolation

function setupInterpolation(classes: string[]): void {
  const form = $<HTMLFormElement>('interp-form');
  const from = $<HTMLInputElement>('interp-from');
  const to = $<HTMLInputElement>('interp-to');
  const status = $('interp-status');
  const slider = $<HTMLInputElement>('interp-slider');
  const frame = $<HTMLCanvasElement>('interp-frame');
  const strip = $<HTMLImageElement>('interp-strip');
  const steps = 11;
  const scale = scaleFor(ex.info, 56);
  // Free text, with the classes offered as suggestions (word-vector runs take any word).
  $('interp-classes').replaceChildren(...classes.map((c) => new Option(c, c)));
  from.value = classes[0] ?? '';
  to.value = classes[Math.min(classes.length - 1, 7)] ?? '';
  slider.max = String(steps - 1);
  let url: string | null = null;
  let pending = 0;

  const drawFrame = () => {
    if (!strip.complete || !strip.naturalWidth) return;
    // Frames keep the images' shape (not always square).
    const fw = strip.naturalWidth / steps;
    const fh = strip.naturalHeight;
    const h = Math.round((frame.width * fh) / fw);
    if (frame.height !== h) frame.height = h;
    const ctx = frame.getContext('2d')!;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(strip, Number(slider.value) * fw, 0, fw, fh, 0, 0, frame.width, frame.height);
  };
  const load = async () => {
    const a = from.value.trim();
    const b = to.value.trim();
    if (!a || !b) return;
    const req = ++pending;
    status.classList.remove('error');
    status.textContent = '';
    try {
      const blob = await ex.interpolate(a, b, steps, scale);
      // A slower earlier answer must not replace the strip of a later request.
      if (req !== pending) return;
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(blob);
      strip.src = url;
      status.textContent = `${a} → ${b}`;
    } catch (e) {
      if (req === pending) showError(e, status);
    }
  };
  strip.addEventListener('load', drawFrame);
  slider.addEventListener('input', drawFrame);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void load();
  });
  // Picking a suggestion from the list fires `change` too: no need to press Go.
  from.addEventListener('change', () => void load());
  to.addEventListener('change', () => void load());
  void load();
}

// ---------------------------------------------------------------- start

/**
 * The static home where the page carries `<meta name="probsem-site" content="site.json">`; under
 * `probsem serve`, the model in this tab with the server for what the tab cannot do (hybrid.ts), or
 * — where the tab cannot compute (no WebAssembly, a failed download) — the server alone.
 */
async function openExplorer(): Promise<{ ex: Explorer; local: LocalExplorer | null }> {
  const site = document.querySelector<HTMLMetaElement>('meta[name="probsem-site"]')?.content;
  if (!site) {
    const remote = await RemoteExplorer.open();
    if (new URLSearchParams(location.search).get('compute') === 'server') return { ex: remote, local: null };
    try {
      const hybrid = await import('./hybrid.js').then((m) => m.HybridExplorer.open(remote));
      return { ex: hybrid, local: null };
    } catch (e) {
      console.warn(`computing on the server: the model could not start in this tab (${e instanceof Error ? e.message : String(e)})`);
      return { ex: remote, local: null };
    }
  }
  const local = await import('./local.js').then((m) => m.LocalExplorer.open(site));
  return { ex: local, local };
}

const METHOD_OPTIONS = new Map<string, string>();

function showModel(): void {
  const m = ex.info;
  const acc = typeof m.metrics?.annotationAccuracy === 'number' ? ` · annotation accuracy ${(100 * m.metrics.annotationAccuracy).toFixed(1)} %` : '';
  const imgs = m.images < m.testImages ? `${m.images} of ${m.testImages} test images` : `${m.testImages} test images`;
  const colour = m.image.channels === 3 ? ' RGB' : '';
  $('model-info').textContent = `${m.model} · latent ${m.latentDim} · ${m.classes.length} classes · ${m.datasetName} (${imgs}, ${m.image.height}×${m.image.width}${colour})${acc} · ${m.home}`;
  const sel = $<HTMLSelectElement>('map-method');
  if (METHOD_OPTIONS.size === 0) for (const o of sel.options) METHOD_OPTIONS.set(o.value, o.text);
  sel.replaceChildren(...[...METHOD_OPTIONS].filter(([v]) => m.methods.includes(v as LatentMethod)).map(([v, t]) => new Option(t, v)));
}

/** Points the whole page at another model (one trained in this tab): header, map, and every later query. */
function switchTo(next: Explorer): void {
  ex = next;
  showModel();
  $('detail').hidden = true;
  $('annotation').replaceChildren();
  void loadMap($<HTMLSelectElement>('map-method').value as LatentMethod);
  document.body.dataset.model = ex.info.model;
}

async function start(): Promise<void> {
  const opened = await openExplorer();
  ex = opened.ex;
  showModel();
  setupMap(ex.info.classes);
  setupWords();
  setupAnnotate();
  setupInterpolation(ex.info.classes);
  const local = opened.local;
  if (local?.site.train) {
    const { setupTrain } = await import('./train-view.js');
    setupTrain(local.site, (meta, weights) => {
      try {
        switchTo(local.withModel(meta, weights));
        $('map-section').scrollIntoView({ behavior: 'smooth' });
      } catch (e) {
        showError(e);
      }
    });
  }
  document.body.dataset.ready = 'true';
}

start().catch((e) => showError(e));
