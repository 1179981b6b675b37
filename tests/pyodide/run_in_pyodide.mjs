// Runs a Python script inside Pyodide under Node 20 with emberllm's sources and WASM kernels installed.
//
// Usage: node run_in_pyodide.mjs <pyodide-dir> <core-dir> <libemberllm.so | emberllm-*.whl> <script.py> [model.gguf]
//
// With a .so, the emberllm package (core/**/*.py and the kernel header the binding reads) is written into
// Pyodide's file system and the side module too, pointed to by EMBERLLM_KERNELS_LIB.  With a wheel, the wheel
// is installed by Pyodide's package loader (which preloads its side module) and core-dir is not used.  A model, when given, is streamed
// in chunks straight into a Python bytearray in the wasm heap (the global MODEL), never held twice.
import fs from "node:fs";
import v8 from "node:v8";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [pyodideDir, coreDir, libPath, scriptPath, modelPath] = process.argv.slice(2);
if (!scriptPath) {
  console.error("usage: node run_in_pyodide.mjs <pyodide-dir> <core-dir> <lib.so|wheel> <script.py> [model.gguf]");
  process.exit(2);
}
// Relaxed SIMD ships enabled from V8 11.4 (Chrome 114); Node 20's V8 11.3 has it behind this flag, with a
// pre-standard i32x4.relaxed_dot_i8x16_i7x16_add_s (first operand unsigned, 8 products per lane), so the
// kernels do not use that instruction yet.
v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
const { loadPyodide } = await import(pathToFileURL(path.join(pyodideDir, "pyodide.mjs")).href);

const t0 = performance.now();
const py = await loadPyodide({ indexURL: pyodideDir + path.sep });
const tBoot = performance.now() - t0;

const PKG = "/home/pyodide/site/emberllm";
function copyTree(src, dst) {
  py.FS.mkdirTree(dst);
  for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, entry.name);
    const d = `${dst}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== "__pycache__") copyTree(s, d);
    } else if (entry.name.endsWith(".py") || entry.name === "ember.h" || entry.name.endsWith(".json")) {
      py.FS.writeFile(d, fs.readFileSync(s));
    }
  }
}
py.globals.set("BOOT_MS", tBoot);
if (libPath.endsWith(".whl")) {
  const t1 = performance.now();
  await py.loadPackage(path.resolve(libPath), { messageCallback: () => {} });
  py.globals.set("INSTALL_MS", performance.now() - t1);
} else {
  copyTree(coreDir, PKG);
  py.FS.writeFile("/home/pyodide/libemberllm.so", fs.readFileSync(libPath));
  py.runPython(`
import os, sys
sys.path.insert(0, "/home/pyodide/site")
os.environ["EMBERLLM_KERNELS_LIB"] = "/home/pyodide/libemberllm.so"
`);
  py.globals.set("INSTALL_MS", 0);
}

if (modelPath) {
  const t1 = performance.now();
  const size = fs.statSync(modelPath).size;
  py.globals.set("MODEL_SIZE", size);
  py.runPython("MODEL = bytearray(MODEL_SIZE)");
  const proxy = py.globals.get("MODEL");
  const buf = proxy.getBuffer("u8");
  try {
    const fd = fs.openSync(modelPath, "r");
    const CHUNK = 16 << 20;
    for (let off = 0; off < size; off += CHUNK) {
      fs.readSync(fd, buf.data, buf.offset + off, Math.min(CHUNK, size - off), off);
    }
    fs.closeSync(fd);
  } finally {
    buf.release();
    proxy.destroy();
  }
  py.globals.set("MODEL_LOAD_MS", performance.now() - t1);
}

try {
  await py.runPythonAsync(fs.readFileSync(scriptPath, "utf8"));
} catch (err) {
  console.error(String(err));
  process.exit(1);
}
