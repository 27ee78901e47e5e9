/**
 * Whether the web view draws with a real GPU or with a software rasteriser (Mesa's llvmpipe or
 * softpipe, SwiftShader, Microsoft's Basic Render Driver): a machine or VM without a GPU. There
 * every composited frame of the whole window is drawn on the CPU, so a continuously animated
 * element costs a large share of a core (the `studio_paint` benchmark measured the web view at
 * 70 % of a core with the seat grid's ripples, 41 % without, docs/studio.md). The console then
 * draws the speaking indicator as a still ring instead of an infinite ripple animation.
 */
export type RenderMode = "gpu" | "software";

const SOFTWARE = /llvmpipe|softpipe|swiftshader|software|basic render/i;

/** Classifies a WebGL renderer string; null or empty (no WebGL at all) counts as software. */
export function classifyRenderer(renderer: string | null | undefined): RenderMode {
  if (!renderer) return "software";
  return SOFTWARE.test(renderer) ? "software" : "gpu";
}

/** The renderer string WebGL reports (unmasked when the browser allows it), or null. */
export function webglRenderer(doc: Document = document): string | null {
  try {
    const gl = doc.createElement("canvas").getContext("webgl");
    if (!gl) return null;
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    const name = gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER);
    gl.getExtension("WEBGL_lose_context")?.loseContext();
    return typeof name === "string" ? name : null;
  } catch {
    return null;
  }
}

/** Sets `data-render` on the root element ("gpu" or "software") for the style sheet: software
 *  when the Studio says the machine has no GPU (`render_mode`; WebKit hides the renderer's
 *  name) or when WebGL names a software rasteriser (Chromium-based web views do). */
export function markRenderMode(host: RenderMode | null = null, doc: Document = document): RenderMode {
  const renderer = webglRenderer(doc);
  const mode = host === "software" ? "software" : classifyRenderer(renderer);
  doc.documentElement.dataset.render = mode;
  doc.documentElement.dataset.renderer = renderer ?? "";
  return mode;
}
