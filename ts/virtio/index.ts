export { TsVirtioBlk } from './blk.js';
export type { TsBlkStats } from './blk.js';
export { TsVirtioConsole } from './console.js';
export { TsVirtioRng } from './rng.js';
export type { VirtioChain, VirtioDevice } from './types.js';
