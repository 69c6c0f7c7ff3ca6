/** `probsem/plot`: PNG and SVG figures through Vega-Lite and resvg (kept out of the main entry). */
export * from './analysis/plot.js';
