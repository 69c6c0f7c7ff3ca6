/** The class colours of the page's maps and legends (Tableau 10). */
const COLOURS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export const colour = (i: number): string => COLOURS[i % COLOURS.length];
