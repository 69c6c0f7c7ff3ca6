/**
 * tfjs-core registers its gradient functions only from an ESM entry that Node cannot load
 * (directory imports), so we take them from the union package's Node bundle, which registers
 * them into the shared global registry. The registry is global, so this import is enough.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
require('@tensorflow/tfjs');
