import { defineConfig } from 'vite';

// Plain Vite: its esbuild compiles TSX with React's automatic runtime, so no React plugin is
// needed (no fast refresh in `vite dev`, which this console can live without).
export default defineConfig({
  esbuild: { jsx: 'automatic' },
  build: { target: 'es2022', outDir: 'dist', emptyOutDir: true },
  server: {
    // `npm run dev -w @tessera/console` against a coordinator on :4000.
    proxy: {
      '/api': 'http://127.0.0.1:4000',
      '/socket.io': { target: 'ws://127.0.0.1:4000', ws: true },
    },
  },
});
