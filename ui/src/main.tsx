import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { commands } from "./bindings";
import { markRenderMode } from "./renderMode";
import "./styles.css";

// One WebGL probe, with the Studio's answer (the default style until it comes: a few ms).
void commands.renderMode().then(markRenderMode, () => markRenderMode(null));

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}
