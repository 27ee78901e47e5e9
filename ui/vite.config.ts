import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// Tauri serves `dist/` from inside the binary; relative asset paths keep it location-independent.
export default defineConfig({
  plugins: [react()],
  base: "./",
  clearScreen: false,
  build: { target: "es2022", outDir: "dist", emptyOutDir: true, sourcemap: false },
  test: { environment: "jsdom", globals: true },
});
