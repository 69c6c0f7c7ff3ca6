/**
 * The Train view of a static site: trains a PSE* on the shipped Fashion-MNIST subset in a worker
 * (train-worker.ts), draws the loss curve and the latent map as they come, then hands the model to
 * the rest of the page (`onUse`) and offers the run as a ZIP the CLI reads.
 */
import type { ModelFile } from '../../src/models/persist.js';
import type { SiteManifest } from '../../src/server/types.js';
import { colour } from './colours.js';
import type { FromWorker, ToWorker, TrainSettings } from './train-protocol.js';

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el as T;
}

function setupCanvas(c: HTMLCanvasElement): { ctx: CanvasRenderingContext2D; w: number; h: number } {
  const w = Number(c.getAttribute('width'));
  const h = Number(c.getAttribute('height'));
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== w * dpr) {
    c.width = w * dpr;
    c.height = h * dpr;
    c.style.width = `${w}px`;
  }
  const ctx = c.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

/** The per-step losses (grey) and their running mean over 20 steps (blue), on a fixed step axis. */
function drawLoss(c: HTMLCanvasElement, losses: number[], steps: number): void {
  const { ctx, w, h } = setupCanvas(c);
  const pad = { l: 46, r: 8, t: 8, b: 20 };
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#555';
  ctx.fillText('step', w - 30, h - 4);
  if (losses.length === 0) return;
  const lo = Math.min(...losses);
  const hi = Math.max(...losses);
  const x = (i: number) => pad.l + ((w - pad.l - pad.r) * (i + 1)) / Math.max(1, steps);
  const y = (v: number) => pad.t + (h - pad.t - pad.b) * (1 - (v - lo) / (hi - lo || 1));
  ctx.fillText(hi.toFixed(0), 4, pad.t + 8);
  ctx.fillText(lo.toFixed(0), 4, h - pad.b);
  ctx.strokeStyle = '#ccc';
  ctx.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
  const line = (vals: number[], stroke: string, width: number) => {
    ctx.strokeStyle = stroke;
    ctx.lineWidth = width;
    ctx.beginPath();
    vals.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
    ctx.stroke();
  };
  line(losses, '#bbb', 1);
  let sum = 0;
  line(losses.map((v, i) => ((sum += v - (i >= 20 ? losses[i - 20] : 0)), sum / Math.min(i + 1, 20))), '#2e6fd8', 2);
}

function drawMap(c: HTMLCanvasElement, m: { x: number[]; y: number[]; labels: number[] }): void {
  const { ctx, w, h } = setupCanvas(c);
  const pad = 10;
  const minX = Math.min(...m.x);
  const minY = Math.min(...m.y);
  const span = Math.max(Math.max(...m.x) - minX, Math.max(...m.y) - minY) || 1;
  const s = (Math.min(w, h) - 2 * pad) / span;
  ctx.globalAlpha = 0.75;
  m.x.forEach((xv, i) => {
    ctx.fillStyle = colour(m.labels[i]);
    ctx.beginPath();
    ctx.arc(pad + (xv - minX) * s, h - pad - (m.y[i] - minY) * s, 2.4, 0, 2 * Math.PI);
    ctx.fill();
  });
  ctx.globalAlpha = 1;
}

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);

/** Wires the Train section; `onUse` switches the page to the trained model. */
export function setupTrain(site: SiteManifest, onUse: (meta: ModelFile, weights: Uint8Array) => void): void {
  const train = site.train;
  if (!train) return;
  const section = $('train-section');
  section.hidden = false;
  const status = $('train-status');
  const start = $<HTMLButtonElement>('train-start');
  const stop = $<HTMLButtonElement>('train-stop');
  const use = $<HTMLButtonElement>('train-use');
  const download = $<HTMLAnchorElement>('train-download');
  const lossCanvas = $<HTMLCanvasElement>('train-loss');
  const mapCanvas = $<HTMLCanvasElement>('train-map');
  $('train-legend').replaceChildren(
    ...train.classNames.map((c, i) => {
      const li = document.createElement('li');
      const dot = document.createElement('span');
      dot.style.background = colour(i);
      li.append(dot, c);
      return li;
    }),
  );
  const num = (id: string, lo: number, hi: number): number => {
    const el = $<HTMLInputElement>(id);
    const v = Number(el.value);
    if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`${el.labels?.[0]?.textContent?.trim() ?? id} must be a whole number from ${lo} to ${hi}`);
    return v;
  };
  $<HTMLFormElement>('train-form').addEventListener('submit', (ev) => ev.preventDefault());
  let worker: Worker | null = null;
  let trained: { meta: ModelFile; weights: Uint8Array } | null = null;
  let url: string | null = null;

  start.addEventListener('click', () => {
    let settings: TrainSettings;
    try {
      settings = { steps: num('train-steps', 1, 100_000), batchSize: num('train-batch', 1, 10_000), latent: num('train-latent', 1, 64), width: num('train-width', 8, 2048), seed: num('train-seed', 0, 2 ** 31 - 1) };
    } catch (e) {
      status.textContent = (e as Error).message;
      status.classList.add('error');
      return;
    }
    worker?.terminate();
    status.classList.remove('error');
    status.textContent = 'loading the training data…';
    section.dataset.state = 'running';
    for (const k of ['step', 'firstLoss', 'lastLoss', 'msPerStep', 'fma']) delete section.dataset[k];
    start.disabled = true;
    stop.disabled = false;
    use.disabled = true;
    download.hidden = true;
    const losses: number[] = [];
    drawLoss(lossCanvas, losses, settings.steps);
    // A module worker: the bundle is an ES module, as the page's is.
    const w = new Worker(new URL(train.worker, location.href), { type: 'module' });
    worker = w;
    const finish = (state: string) => {
      section.dataset.state = state;
      start.disabled = false;
      stop.disabled = true;
      w.terminate();
      if (worker === w) worker = null;
    };
    w.onerror = (ev) => {
      status.textContent = `the training worker failed: ${ev.message || 'could not start it'}`;
      status.classList.add('error');
      finish('error');
    };
    w.onmessage = (ev: MessageEvent<FromWorker>) => {
      const m = ev.data;
      if (m.type === 'error') {
        status.textContent = m.message;
        status.classList.add('error');
        finish('error');
        return;
      }
      if (m.type === 'progress') {
        losses.push(...m.losses);
        drawLoss(lossCanvas, losses, m.steps);
        if (m.map) drawMap(mapCanvas, m.map);
        const recent = losses.slice(-20);
        status.textContent = `step ${m.step} / ${m.steps} · loss ${mean(recent).toFixed(1)} · ${m.msPerStep.toFixed(1)} ms/step`;
        section.dataset.step = String(m.step);
        section.dataset.firstLoss = String(mean(losses.slice(0, 10)));
        section.dataset.lastLoss = String(mean(losses.slice(-10)));
        section.dataset.msPerStep = String(m.msPerStep);
        return;
      }
      trained = { meta: JSON.parse(m.modelJson) as ModelFile, weights: new Uint8Array(m.weights) };
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(new Blob([m.zip], { type: 'application/zip' }));
      download.href = url;
      download.download = `${m.name}.zip`;
      download.hidden = false;
      use.disabled = false;
      section.dataset.fma = String(m.fma);
      status.textContent = `trained ${m.step} steps · loss ${mean(losses.slice(-20)).toFixed(1)} · ${m.msPerStep.toFixed(1)} ms/step in this tab`;
      finish('done');
    };
    const msg: ToWorker = { type: 'start', base: location.href, train, settings };
    w.postMessage(msg);
  });
  stop.addEventListener('click', () => {
    const msg: ToWorker = { type: 'stop' };
    worker?.postMessage(msg);
    status.textContent = 'stopping after the current steps…';
  });
  use.addEventListener('click', () => {
    if (trained) onUse(trained.meta, trained.weights);
  });
}
