import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { commands } from "./bindings";
import { markRenderMode } from "./renderMode";
import "./styles.css";

markRenderMode();
void commands.renderMode().then((host) => markRenderMode(host), () => undefined);

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}
