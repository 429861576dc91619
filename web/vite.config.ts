// Builds the trace viewer into ../dist-web/ as a static site: relative URLs (base './') so it
// works from any directory of any static host, and the wasm decoder emitted as a file next to
// the script (never inlined, never fetched from elsewhere).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL('../dist-web/', import.meta.url)),
    emptyOutDir: true,
    // BigInt and BigUint64Array are needed by the decoder's columns.
    target: 'es2022',
    assetsInlineLimit: 0,
    sourcemap: true,
    reportCompressedSize: false,
  },
  server: {
    host: '127.0.0.1',
    // The page imports ../ts and ../wasm/pkg from the package itself.
    fs: { allow: [fileURLToPath(new URL('..', import.meta.url))] },
  },
});
