// Runs a Python script inside Pyodide in a Chromium module Web Worker with emberllm's sources and a WASM side
// module: the browser twin of run_in_pyodide.mjs, for kernels Node 20's V8 cannot run (relaxed SIMD).
//
// Message in: { files: ["backends/binding.py", "wasm_kernels/ember.h", ...] (under /core/), lib: URL of the .so,
//   script: URL of the .py }.  Message out: { ok, out (the script's stdout), error }.
self.onmessage = async (event) => {
  const { files, lib, script } = event.data;
  let out = '';
  try {
    const origin = self.location.origin;
    const { loadPyodide } = await import(`${origin}/pyodide/pyodide.mjs`);
    const py = await loadPyodide({ indexURL: `${origin}/pyodide/` });
    py.setStdout({ batched: (line) => { out += `${line}\n`; } });
    py.setStderr({ batched: (line) => { out += `${line}\n`; } });
    const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
    const pkg = '/home/pyodide/site/emberllm';
    for (const rel of files) {
      const dst = `${pkg}/${rel}`;
      py.FS.mkdirTree(dst.slice(0, dst.lastIndexOf('/')));
      py.FS.writeFile(dst, await bytes(`${origin}/core/${rel}`));
    }
    py.FS.writeFile('/home/pyodide/libemberllm.so', await bytes(lib));
    py.runPython(`
import os, sys
sys.path.insert(0, "/home/pyodide/site")
os.environ["EMBERLLM_KERNELS_LIB"] = "/home/pyodide/libemberllm.so"
`);
    await py.runPythonAsync(await (await fetch(script)).text());
    self.postMessage({ ok: true, out });
  } catch (err) {
    self.postMessage({ ok: false, out, error: err && err.stack ? err.stack : String(err) });
  }
};
