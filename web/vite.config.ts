// Builds the web UI (web/src) into web/dist, which the orchestrator serves at / (see
// src/api/routes-web.ts). The output is committed, so a fresh clone serves the UI with no
// build step; rebuild with `npm run build:web` after changing web/src. Everything is bundled
// (Preact, uPlot, yaml, the API client): no CDN, works offline.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Small enough to read in a review diff: no source maps in the committed output.
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
});
