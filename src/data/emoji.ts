/**
 * `emoji`: a real colour image–word dataset built on first use from npm packages, nothing fetched
 * at run time. Pictures are the 64×64 PNGs of the `emoji-datasource-<style>` packages (google,
 * twitter, apple, facebook); words come from `emojibase-data` (English: label, tags, group,
 * subgroup). Classes are emojibase's subgroups (about 100: face-smiling, animal-mammal, …), each
 * picture also carries its emoji's tags as a tag set, and the group → subgroup taxonomy is kept as
 * the dataset's hierarchy.
 *
 * Spec: `emoji?styles=google&test=twitter&size=32` — train on the pictures of `styles` (comma list)
 * and test on another style (cross-style), or `test=0.2` to hold out that share of each subgroup's
 * emoji in every style (seeded by `seed`). Decoded pixels are cached per style and size.
 *
 * The packages are development dependencies of probsem, never runtime ones: a library user who
 * wants this dataset installs them, and the error says how.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ProbsemError } from '../core/errors.js';
import { writeFileAtomicSync } from '../core/files.js';
import { Rng } from '../core/random.js';
import { type Dataset, type Split, packTags } from './dataset.js';

export const EMOJI_NAME = 'emoji';
export const EMOJI_STYLES = ['google', 'twitter', 'apple', 'facebook'] as const;
export type EmojiStyle = (typeof EMOJI_STYLES)[number];

/** emojibase's "component" group: skin-tone and hair swatches, not pictures of anything. */
const COMPONENT_GROUP = 'component';

export interface EmojiSpec {
  /** Styles whose pictures are trained on. */
  styles: EmojiStyle[];
  /** A style to test on (cross-style), or the share of each subgroup's emoji held out. */
  test: EmojiStyle | number;
  height: number;
  width: number;
  channels: 1 | 3;
  seed: number;
}

export interface EmojiDataset extends Dataset {
  /** The emoji (emojibase hexcode) and style of every picture, so the same emoji can be matched across styles. */
  emoji: { train: { hexcode: string[]; style: EmojiStyle[] }; test: { hexcode: string[]; style: EmojiStyle[] } };
  /** emojibase's English label of each hexcode ("grinning face"). */
  labelOf: Record<string, string>;
  /** Emoji left out because a style lacks their picture, per style. */
  missing: Record<string, number>;
}

const DEFAULTS: EmojiSpec = { styles: ['google'], test: 'twitter', height: 32, width: 32, channels: 3, seed: 0 };

export function isEmojiSpec(spec: string): boolean {
  return spec === EMOJI_NAME || spec.startsWith(`${EMOJI_NAME}?`);
}

function parseStyle(value: string): EmojiStyle {
  if (!(EMOJI_STYLES as readonly string[]).includes(value)) {
    throw new ProbsemError(`emoji: unknown style '${value}' (styles: ${EMOJI_STYLES.join(', ')})`, 'BAD_OPTION');
  }
  return value as EmojiStyle;
}

/** Parses `emoji[?styles=a,b&test=STYLE|F&size=N|HxW&channels=1|3&seed=S]`. */
export function parseEmojiSpec(spec: string): EmojiSpec {
  if (!isEmojiSpec(spec)) throw new ProbsemError(`not an emoji spec: ${spec}`, 'BAD_OPTION');
  const out: EmojiSpec = { ...DEFAULTS, styles: [...DEFAULTS.styles] };
  const query = spec.slice(EMOJI_NAME.length + 1);
  for (const part of query.split('&').filter(Boolean)) {
    const [key, value = ''] = part.split('=');
    if (key === 'styles') {
      out.styles = [...new Set(value.split(',').map((s) => parseStyle(s.trim())))];
    } else if (key === 'test') {
      const f = Number(value);
      if (/^[0-9.]+$/.test(value)) {
        if (!(f > 0 && f < 1)) throw new ProbsemError(`emoji: test must be a style or a fraction in (0, 1), got '${value}'`, 'BAD_OPTION');
        out.test = f;
      } else out.test = parseStyle(value);
    } else if (key === 'size') {
      const m = /^(\d+)(?:x(\d+))?$/.exec(value);
      const h = m ? Number(m[1]) : NaN;
      const w = m ? Number(m[2] ?? m[1]) : NaN;
      if (!(h >= 8 && h <= 64 && w >= 8 && w <= 64)) throw new ProbsemError(`emoji: size must be N or HxW with sides from 8 to 64 (the pictures are 64×64), got '${value}'`, 'BAD_OPTION');
      out.height = h;
      out.width = w;
    } else if (key === 'channels') {
      if (value !== '1' && value !== '3') throw new ProbsemError(`emoji: channels must be 1 (grey) or 3 (RGB), got '${value}'`, 'BAD_OPTION');
      out.channels = Number(value) as 1 | 3;
    } else if (key === 'seed') {
      const s = Number(value);
      if (!Number.isSafeInteger(s) || s < 0) throw new ProbsemError(`emoji: seed must be a non-negative integer, got '${value}'`, 'BAD_OPTION');
      out.seed = s;
    } else {
      throw new ProbsemError(`emoji: unknown option '${key}' (styles, test, size, channels, seed)`, 'BAD_OPTION');
    }
  }
  if (out.styles.length === 0) throw new ProbsemError('emoji: styles is empty', 'BAD_OPTION');
  if (typeof out.test === 'string' && out.styles.includes(out.test)) {
    throw new ProbsemError(`emoji: the test style '${out.test}' is also a training style; test on another style or on a fraction (test=0.2)`, 'BAD_OPTION');
  }
  return out;
}

/** The canonical spec: options that differ from the defaults, in a fixed order. */
export function emojiName(s: EmojiSpec): string {
  const opts: string[] = [];
  if (s.styles.join(',') !== DEFAULTS.styles.join(',')) opts.push(`styles=${s.styles.join(',')}`);
  if (s.test !== DEFAULTS.test) opts.push(`test=${s.test}`);
  if (s.height !== DEFAULTS.height || s.width !== DEFAULTS.width) opts.push(`size=${s.height === s.width ? s.height : `${s.height}x${s.width}`}`);
  if (s.channels !== DEFAULTS.channels) opts.push(`channels=${s.channels}`);
  if (s.seed !== DEFAULTS.seed) opts.push(`seed=${s.seed}`);
  return opts.length ? `${EMOJI_NAME}?${opts.join('&')}` : EMOJI_NAME;
}

const INSTALL_HINT = (pkgs: string[]) =>
  `run 'npm install --no-save ${pkgs.join(' ')}' (they are development dependencies of probsem: 'npm install' in a clone of probsem has them)`;

/** Finds an installed package's directory, looking from the working directory first, then from probsem itself. */
export function packageDir(name: string, roots: string[] = [process.cwd()]): string | null {
  const bases = [...roots.map((r) => join(r, 'package.json')), import.meta.url];
  for (const base of bases) {
    try {
      return dirname(createRequire(base).resolve(`${name}/package.json`));
    } catch {
      // not installed from here; try the next place
    }
  }
  return null;
}

interface EmojibaseEntry {
  label: string;
  hexcode: string;
  tags?: string[];
  group?: number;
  subgroup?: number;
}
interface DatasourceEntry {
  unified: string;
  non_qualified?: string | null;
  image: string;
  [hasImg: `has_img_${string}`]: boolean | undefined;
}

interface EmojiCatalogue {
  /** Emoji with a group and subgroup, in emojibase order. */
  entries: { hexcode: string; label: string; tags: string[]; group: string; subgroup: string }[];
  /** The picture of each hexcode per style (absent where the style has none). */
  files: Map<EmojiStyle, Map<string, string>>;
  versions: Record<string, string>;
}

function readJson(path: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ProbsemError(`${what}: cannot read ${path} (${(e as Error).message})`, 'DATA_FORMAT');
  }
}

/** Reads emojibase's English data and each style's picture list. */
export function readEmojiCatalogue(styles: EmojiStyle[], roots?: string[]): EmojiCatalogue {
  const needed = ['emojibase-data', ...styles.map((s) => `emoji-datasource-${s}`)];
  const dirs = Object.fromEntries(needed.map((n) => [n, packageDir(n, roots)]));
  const absent = needed.filter((n) => !dirs[n]);
  if (absent.length > 0) {
    throw new ProbsemError(`the emoji dataset needs the npm package${absent.length > 1 ? 's' : ''} ${absent.join(', ')}: ${INSTALL_HINT(absent)}`, 'NOT_FOUND');
  }
  const versions: Record<string, string> = {};
  for (const n of needed) versions[n] = String((readJson(join(dirs[n]!, 'package.json'), n) as { version?: string }).version ?? '?');

  const base = dirs['emojibase-data']!;
  const data = readJson(join(base, 'en', 'data.json'), 'emojibase-data') as EmojibaseEntry[];
  const meta = readJson(join(base, 'meta', 'groups.json'), 'emojibase-data') as { groups: Record<string, string>; subgroups: Record<string, string> };
  if (!Array.isArray(data) || !meta?.groups || !meta?.subgroups) throw new ProbsemError(`emojibase-data in ${base} is not in the expected format (en/data.json, meta/groups.json)`, 'DATA_FORMAT');
  const entries: EmojiCatalogue['entries'] = [];
  for (const e of data) {
    if (e.group === undefined || e.subgroup === undefined) continue; // regional indicators and the like
    const group = meta.groups[e.group];
    const subgroup = meta.subgroups[e.subgroup];
    if (!group || !subgroup || group === COMPONENT_GROUP) continue;
    entries.push({ hexcode: e.hexcode, label: e.label, tags: (e.tags ?? []).map((t) => t.toLowerCase()), group, subgroup });
  }

  const files = new Map<EmojiStyle, Map<string, string>>();
  for (const style of styles) {
    const dir = dirs[`emoji-datasource-${style}`]!;
    const list = readJson(join(dir, 'emoji.json'), `emoji-datasource-${style}`) as DatasourceEntry[];
    if (!Array.isArray(list)) throw new ProbsemError(`emoji-datasource-${style}: emoji.json is not a list`, 'DATA_FORMAT');
    const byCode = new Map<string, string>();
    for (const d of list) {
      if (!d[`has_img_${style}`]) continue;
      const file = join(dir, 'img', style, '64', d.image);
      for (const code of [d.unified, d.non_qualified]) if (code) byCode.set(code.toUpperCase(), file);
    }
    files.set(style, byCode);
  }
  return { entries, files, versions };
}

/** Looks a hexcode up, also without its emoji-presentation selectors (emojibase and the datasource differ there). */
function pictureOf(byCode: Map<string, string>, hexcode: string): string | undefined {
  return byCode.get(hexcode) ?? byCode.get(hexcode.replace(/-FE0F/g, ''));
}

export interface EmojiLoadOptions {
  /** Where decoded pictures are cached (default $PROBSEM_CACHE or ~/.cache/probsem). */
  cacheDir?: string;
  /** Where to look for the packages before probsem's own node_modules (default: the working directory). */
  roots?: string[];
  onProgress?: (done: number, total: number) => void;
  onNotice?: (msg: string) => void;
}

/** Decodes one style's pictures (in the order given) at the spec's size, from the cache when it has them. */
async function stylePixels(files: string[], s: EmojiSpec, style: EmojiStyle, version: string, o: EmojiLoadOptions, progress: { done: number; total: number }): Promise<Uint8Array> {
  const pixels = s.height * s.width * s.channels;
  const key = createHash('sha256').update(JSON.stringify({ v: 1, style, version, h: s.height, w: s.width, c: s.channels, files: files.map((f) => f.slice(f.lastIndexOf('/') + 1)) })).digest('hex').slice(0, 20);
  const cacheFile = join(o.cacheDir ?? process.env.PROBSEM_CACHE ?? join(homedir(), '.cache', 'probsem'), 'datasets', `emoji-${style}-${key}.u8`);
  if (existsSync(cacheFile)) {
    const buf = readFileSync(cacheFile);
    if (buf.length === files.length * pixels) {
      progress.done += files.length;
      o.onProgress?.(progress.done, progress.total);
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
    }
    o.onNotice?.(`the emoji cache ${cacheFile} has the wrong size (${buf.length} bytes, expected ${files.length * pixels}); decoding again`);
  }
  const { decodeImage } = await import('./image-decode.js');
  const out = new Uint8Array(files.length * pixels);
  for (let i = 0; i < files.length; i++) {
    const img = await decodeImage(readFileSync(files[i]), { height: s.height, width: s.width, channels: s.channels, asIs: true, source: files[i] });
    for (let p = 0; p < pixels; p++) out[i * pixels + p] = Math.round(img.pixels[p] * 255);
    progress.done++;
    if (progress.done % 200 === 0 || progress.done === progress.total) o.onProgress?.(progress.done, progress.total);
  }
  mkdirSync(dirname(cacheFile), { recursive: true });
  writeFileAtomicSync(cacheFile, out);
  return out;
}

/** Loads the emoji dataset a spec describes. */
export async function loadEmoji(spec: string, o: EmojiLoadOptions = {}): Promise<EmojiDataset> {
  const s = parseEmojiSpec(spec);
  const allStyles = [...new Set([...s.styles, ...(typeof s.test === 'string' ? [s.test] : [])])];
  const cat = readEmojiCatalogue(allStyles, o.roots);

  const subgroups = [...new Set(cat.entries.map((e) => e.subgroup))];
  const groups = [...new Set(cat.entries.map((e) => e.group))];
  const classOf = new Map(subgroups.map((c, i) => [c, i]));
  const tagNames = [...new Set(cat.entries.flatMap((e) => e.tags))].sort();
  const tagIndex = new Map(tagNames.map((t, i) => [t, i]));

  // Which emoji are test emoji when splitting by emoji: a seeded share of each subgroup (at least one where it has two or more).
  const testEmoji = new Set<string>();
  if (typeof s.test === 'number') {
    for (const sub of subgroups) {
      const members = cat.entries.filter((e) => e.subgroup === sub);
      if (members.length < 2) continue;
      const perm = Rng.for(s.seed, 'emoji-split', classOf.get(sub)!).permutation(members.length);
      const k = Math.max(1, Math.round(members.length * s.test));
      for (let i = 0; i < k; i++) testEmoji.add(members[perm[i]].hexcode);
    }
  }

  type Item = { entry: EmojiCatalogue['entries'][number]; style: EmojiStyle; file: string };
  const missing: Record<string, number> = {};
  const itemsOf = (style: EmojiStyle, keep: (hexcode: string) => boolean): Item[] => {
    const byCode = cat.files.get(style)!;
    const out: Item[] = [];
    for (const entry of cat.entries) {
      if (!keep(entry.hexcode)) continue;
      const file = pictureOf(byCode, entry.hexcode);
      if (file && existsSync(file)) out.push({ entry, style, file });
      else missing[style] = (missing[style] ?? 0) + 1;
    }
    return out;
  };
  const trainItems = s.styles.flatMap((st) => itemsOf(st, (h) => !testEmoji.has(h)));
  const testItems = typeof s.test === 'string' ? itemsOf(s.test, () => true) : s.styles.flatMap((st) => itemsOf(st, (h) => testEmoji.has(h)));
  if (Object.keys(missing).length > 0) {
    o.onNotice?.(`emoji without a picture in a style were left out: ${Object.entries(missing).map(([st, n]) => `${st} ${n}`).join(', ')}`);
  }

  // Decode each style once, over every emoji it has, so train and test share the cache.
  const pixels = s.height * s.width * s.channels;
  const progress = { done: 0, total: 0 };
  const styleFiles = new Map<EmojiStyle, Set<string>>();
  for (const it of [...trainItems, ...testItems]) {
    if (!styleFiles.has(it.style)) styleFiles.set(it.style, new Set());
    styleFiles.get(it.style)!.add(it.file);
  }
  for (const files of styleFiles.values()) progress.total += files.size;
  const decoded = new Map<string, Uint8Array>();
  for (const [style, files] of styleFiles) {
    const list = [...files];
    const all = await stylePixels(list, s, style, cat.versions[`emoji-datasource-${style}`], o, progress);
    list.forEach((f, i) => decoded.set(f, all.subarray(i * pixels, (i + 1) * pixels)));
  }

  const build = (items: Item[]): Split => {
    const images = new Uint8Array(items.length * pixels);
    const labels = new Uint8Array(items.length);
    items.forEach((it, i) => {
      images.set(decoded.get(it.file)!, i * pixels);
      labels[i] = classOf.get(it.entry.subgroup)!;
    });
    return { images, labels, count: items.length, ...packTags(items.map((it) => it.entry.tags.map((t) => tagIndex.get(t)!))) };
  };
  if (trainItems.length === 0 || testItems.length === 0) {
    throw new ProbsemError(`emoji: the split left ${trainItems.length} training and ${testItems.length} test pictures; both need at least one`, 'DATA_FORMAT');
  }
  const subgroupGroup = new Map(cat.entries.map((e) => [e.subgroup, e.group]));
  const ids = (items: Item[]) => ({ hexcode: items.map((it) => it.entry.hexcode), style: items.map((it) => it.style) });
  return {
    name: emojiName(s),
    source: Object.entries(cat.versions).map(([n, v]) => `${n}@${v}`).join(', '),
    height: s.height,
    width: s.width,
    ...(s.channels === 3 ? { channels: 3 as const } : {}),
    classNames: subgroups,
    train: build(trainItems),
    test: build(testItems),
    hierarchy: { parents: groups, parentOf: subgroups.map((sub) => groups.indexOf(subgroupGroup.get(sub)!)) },
    tagNames,
    emoji: { train: ids(trainItems), test: ids(testItems) },
    labelOf: Object.fromEntries(cat.entries.map((e) => [e.hexcode, e.label])),
    missing,
  };
}
