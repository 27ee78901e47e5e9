import { classifyRenderer, markRenderMode } from "./renderMode";

describe("render mode", () => {
  it("tells software rasterisers from GPUs by the WebGL renderer string", () => {
    for (const r of [
      "llvmpipe (LLVM 15.0.6, 256 bits)",
      "softpipe",
      "Google SwiftShader",
      "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)",
      "Microsoft Basic Render Driver",
      "Software Rasterizer",
    ]) {
      expect(classifyRenderer(r)).toBe("software");
    }
    for (const r of ["Mesa Intel(R) UHD Graphics 620 (KBL GT2)", "AMD Radeon RX 6600 (radeonsi, navi23, LLVM 15.0.6, DRM 3.49, 6.1.0)", "NVIDIA GeForce RTX 3060/PCIe/SSE2", "Apple M2", "WebKit WebGL"]) {
      expect(classifyRenderer(r)).toBe("gpu");
    }
  });

  it("takes the Studio's word for a machine without a GPU", () => {
    expect(markRenderMode("software", document)).toBe("software");
    expect(document.documentElement.dataset.render).toBe("software");
  });

  it("counts a web view without WebGL as software and marks the root element", () => {
    expect(classifyRenderer(null)).toBe("software");
    expect(classifyRenderer("")).toBe("software");
    // jsdom has no WebGL.
    expect(markRenderMode(null, document)).toBe("software");
    expect(document.documentElement.dataset.render).toBe("software");
  });
});
