/**
 * Figures as PNG: Vega-Lite specs (scatter maps coloured by label, panels of them, training
 * curves) compiled to Vega, rendered headless to SVG and rasterised by resvg with DejaVu Sans.
 * The spec builders are pure functions, so callers can inspect or extend a spec before rendering.
 */
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { ProbsemError } from '../core/errors.js';
import { writeFileAtomicSync } from '../core/files.js';

export type { TopLevelSpec };

/** The font every figure uses (Debian's fonts-dejavu-core; resvg falls back to any sans-serif). */
export const PLOT_FONT = 'DejaVu Sans';

export interface ScatterPoint {
  x: number;
  y: number;
  label: string;
}

export interface ScatterPanel {
  title: string;
  points: ScatterPoint[];
  /** Axis titles (default "x", "y"). */
  axes?: [string, string];
}

export interface ScatterStyle {
  /** Plot area of one panel in pixels (default 360 × 360). */
  width?: number;
  height?: number;
  /** Mark area in square pixels (default: smaller for more points). */
  pointSize?: number;
  /** Mark opacity (default 0.7). */
  opacity?: number;
}

/** A categorical scheme with enough distinct colours for the classes. */
function colourScheme(classes: number): string {
  return classes <= 10 ? 'tableau10' : 'tableau20';
}

const baseConfig = {
  font: PLOT_FONT,
  background: 'white',
  title: { fontSize: 15, anchor: 'middle' as const, offset: 12 },
  axis: { labelFontSize: 11, titleFontSize: 12, grid: true, gridOpacity: 0.4 },
  legend: { labelFontSize: 12, titleFontSize: 12, symbolSize: 120, symbolOpacity: 1 },
  header: { labelFontSize: 13, titleFontSize: 13 },
};

function defaultPointSize(n: number): number {
  return n > 5000 ? 6 : n > 1500 ? 10 : n > 300 ? 18 : 30;
}

/** One scatter layer (no data, no top-level properties): shared by single maps and panels. */
function scatterUnit(panel: ScatterPanel, classes: string[], style: ScatterStyle) {
  const [xTitle, yTitle] = panel.axes ?? ['x', 'y'];
  return {
    title: panel.title,
    width: style.width ?? 360,
    height: style.height ?? 360,
    data: { values: panel.points },
    mark: { type: 'circle' as const, size: style.pointSize ?? defaultPointSize(panel.points.length), opacity: style.opacity ?? 0.7 },
    encoding: {
      x: { field: 'x', type: 'quantitative' as const, title: xTitle, scale: { zero: false, nice: true } },
      y: { field: 'y', type: 'quantitative' as const, title: yTitle, scale: { zero: false, nice: true } },
      color: {
        field: 'label',
        type: 'nominal' as const,
        title: 'label',
        // A fixed domain gives every class the same colour in every panel and keeps the class order.
        scale: { domain: classes, scheme: colourScheme(classes.length) },
      },
    },
  };
}

function checkClasses(panels: ScatterPanel[], classes: string[]): void {
  if (classes.length === 0) throw new ProbsemError('a scatter plot needs at least one class', 'BAD_OPTION');
  const known = new Set(classes);
  for (const p of panels) {
    for (const pt of p.points) {
      if (!known.has(pt.label)) throw new ProbsemError(`panel '${p.title}' has a point labelled '${pt.label}', which is not one of the classes`, 'BAD_OPTION');
      if (!Number.isFinite(pt.x) || !Number.isFinite(pt.y)) throw new ProbsemError(`panel '${p.title}' has a non-finite coordinate`, 'BAD_OPTION');
    }
  }
}

/** A scatter map of labelled 2-D points, coloured by label (in the order of `classes`), with a legend. */
export function scatterSpec(panel: ScatterPanel, classes: string[], style: ScatterStyle = {}): TopLevelSpec {
  checkClasses([panel], classes);
  return { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', config: baseConfig, ...scatterUnit(panel, classes, style) } as TopLevelSpec;
}

/**
 * Several scatter maps side by side (wrapping after `columns`), each with its own title and axes,
 * sharing one colour legend. One panel gives the same figure as `scatterSpec`.
 */
export function scatterPanelsSpec(panels: ScatterPanel[], classes: string[], opts: ScatterStyle & { columns?: number; title?: string } = {}): TopLevelSpec {
  if (panels.length === 0) throw new ProbsemError('no panels to plot', 'BAD_OPTION');
  checkClasses(panels, classes);
  if (panels.length === 1 && opts.title === undefined) return scatterSpec(panels[0], classes, opts);
  const columns = Math.max(1, Math.min(panels.length, opts.columns ?? Math.min(panels.length, 3)));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: baseConfig,
    ...(opts.title !== undefined ? { title: { text: opts.title, fontSize: 17 } } : {}),
    columns,
    concat: panels.map((p) => scatterUnit(p, classes, opts)),
    resolve: { scale: { color: 'shared', x: 'independent', y: 'independent' } },
  } as TopLevelSpec;
}

/** One logged value of one loss term. `run` tells several runs apart (colour). */
export interface CurvePoint {
  run: string;
  step: number;
  term: string;
  value: number;
}

export interface CurvesOptions {
  /** Terms to show, in this order (default: every term in the data, in order of appearance). */
  terms?: string[];
  /** Logarithmic y axis (every value must be positive). */
  logY?: boolean;
  /** One chart with a colour per term instead of one panel per term (one run only). */
  overlay?: boolean;
  /** Size of one panel's plot area (default 300 × 200; overlay 480 × 300). */
  width?: number;
  height?: number;
  /** Panels per row (default 2). */
  columns?: number;
  title?: string;
}

/**
 * Training curves: by default one panel per loss term (each with its own y scale), a colour per
 * run when there are several; `overlay` draws every term of one run in one chart instead.
 */
export function curvesSpec(points: CurvePoint[], opts: CurvesOptions = {}): TopLevelSpec {
  if (points.length === 0) throw new ProbsemError('no training-curve points to plot', 'BAD_OPTION');
  const present = [...new Set(points.map((p) => p.term))];
  const terms = opts.terms ?? present;
  const missing = terms.filter((t) => !present.includes(t));
  if (missing.length) throw new ProbsemError(`no logged values for term${missing.length > 1 ? 's' : ''} ${missing.join(', ')}; the log has ${present.join(', ')}`, 'BAD_OPTION');
  const values = points.filter((p) => terms.includes(p.term));
  if (opts.logY) {
    const bad = terms.filter((t) => values.some((p) => p.term === t && !(p.value > 0)));
    if (bad.length) throw new ProbsemError(`a logarithmic y axis needs positive values, but ${bad.join(', ')} ${bad.length > 1 ? 'have' : 'has'} values ≤ 0: leave out --log-y or choose --terms`, 'BAD_OPTION');
  }
  const runs = [...new Set(values.map((p) => p.run))];
  const yScale = opts.logY ? { type: 'log' as const, nice: false } : { zero: false };
  const x = { field: 'step', type: 'quantitative' as const, title: 'step' };
  const top = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', config: baseConfig, ...(opts.title !== undefined ? { title: opts.title } : {}) };
  if (opts.overlay) {
    if (runs.length > 1) throw new ProbsemError('--overlay draws the terms of one run; give one run or leave out --overlay', 'BAD_OPTION');
    return {
      ...top,
      width: opts.width ?? 480,
      height: opts.height ?? 300,
      data: { values },
      mark: { type: 'line', point: values.length <= 200 ? { size: 16 } : false },
      encoding: {
        x,
        y: { field: 'value', type: 'quantitative', title: opts.logY ? 'value (log scale)' : 'value', scale: yScale },
        color: { field: 'term', type: 'nominal', title: 'term', sort: terms, scale: { scheme: colourScheme(terms.length) } },
      },
    } as TopLevelSpec;
  }
  return {
    ...top,
    data: { values },
    columns: Math.max(1, Math.min(terms.length, opts.columns ?? 2)),
    facet: { field: 'term', type: 'nominal', sort: terms, title: null },
    spec: {
      width: opts.width ?? 300,
      height: opts.height ?? 200,
      mark: { type: 'line', point: values.length / terms.length <= 100 ? { size: 12 } : false },
      encoding: {
        x,
        // The panel's header names the term.
        y: { field: 'value', type: 'quantitative', title: opts.logY ? 'log scale' : null, scale: yScale },
        ...(runs.length > 1
          ? { color: { field: 'run', type: 'nominal', title: 'run', sort: runs, scale: { scheme: colourScheme(runs.length) } } }
          : {}),
      },
    },
    resolve: { scale: { y: 'independent' } },
  } as TopLevelSpec;
}

/** Compiles a Vega-Lite spec and renders it headless to an SVG string. */
export async function specToSvg(spec: TopLevelSpec): Promise<string> {
  let view: vega.View;
  try {
    view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  } catch (e) {
    throw new ProbsemError(`could not build the plot: ${(e as Error).message}`, 'PLOT');
  }
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export interface RasterOptions {
  /** Pixel density: output pixels per SVG unit (default 2). */
  scale?: number;
}

/** Rasterises an SVG to PNG (white background, DejaVu Sans for sans-serif text). */
export function svgToPng(svg: string, opts: RasterOptions = {}): Buffer {
  const scale = opts.scale ?? 2;
  if (!(scale > 0 && scale <= 8)) throw new ProbsemError(`the plot scale must be in (0, 8], got ${scale}`, 'BAD_OPTION');
  try {
    const r = new Resvg(svg, {
      background: 'white',
      fitTo: { mode: 'zoom', value: scale },
      font: { loadSystemFonts: true, defaultFontFamily: PLOT_FONT, sansSerifFamily: PLOT_FONT },
    });
    return Buffer.from(r.render().asPng());
  } catch (e) {
    throw new ProbsemError(`could not rasterise the plot: ${(e as Error).message}`, 'PLOT');
  }
}

/** A Vega-Lite spec rendered to PNG bytes. */
export async function renderPng(spec: TopLevelSpec, opts: RasterOptions = {}): Promise<Buffer> {
  return svgToPng(await specToSvg(spec), opts);
}

/** Renders a Vega-Lite spec to a PNG file, written atomically. Returns the PNG's byte count. */
export async function writePlotPng(path: string, spec: TopLevelSpec, opts: RasterOptions = {}): Promise<number> {
  const png = await renderPng(spec, opts);
  writeFileAtomicSync(path, png);
  return png.length;
}
