// WebGPU for emberllm in Pyodide: opens navigator.gpu (asynchronous, so before the model loads) and gives Python
// (core/backends/webgpu/browser.py) a small driver that runs whole plans.  Plain ES module, no dependencies.
//
//   const { driver, reason } = await openWebGpu();       // driver: null (and the reason) when unusable
//   driver.buffer(nbytes, label) -> id;  driver.write(id, offset, bytes);  driver.pipeline(wgsl, label) -> id
//   driver.run(writeMeta, writeData, planId, desc, params, reads) -> null | Promise<Uint8Array>
//
// Semantics mirror the native device (core/backends/webgpu/native.py): one uniform buffer of parameters with a
// 256-byte slot per dispatch, bound at binding 0 at offset slot*256; the dispatch's storage buffers at bindings
// 1..; bind groups cached by (pipeline, slot, buffers); one compute pass per run, then the readbacks.  A plan's
// structure (pipelines, grids, buffers) is decoded once and cached under the id Python gives it, so a decode step
// that repeats the previous step's dispatches sends only its parameters (and the small writes queued since the
// last plan).  A run without readbacks resolves once the queue has finished it (a synchronisation, as natively).

/** Bytes of each dispatch's parameter slot (core/backends/webgpu/device.py PARAM_SLOT). */
export const PARAM_SLOT = 256;
const WRITE_CHUNK = 16 * 1024 * 1024; // writeBuffer in pieces: a weight can be hundreds of MB

/** Whether this engine can suspend wasm on a promise (JSPI), which the Python side needs to await readbacks. */
export function hasJspi() {
  return typeof WebAssembly !== "undefined" && typeof WebAssembly.Suspending === "function";
}

/** A name for the adapter: its description or device, else vendor and architecture (SwiftShader: "google
 * swiftshader"). */
export function adapterName(adapter) {
  const info = adapter.info || {};
  return info.description || info.device || [info.vendor, info.architecture].filter(Boolean).join(" ") ||
    "unknown adapter";
}

/**
 * Open the WebGPU adapter and device (all of the adapter's storage limits, shader-f16 when it has it and ``f16``).
 * Resolves to ``{ driver, reason }``: ``driver`` null and ``reason`` saying why when WebGPU is not usable here.
 */
export async function openWebGpu({ f16 = true, powerPreference = "high-performance" } = {}) {
  const gpu = globalThis.navigator?.gpu;
  if (!gpu) return { driver: null, reason: "this browser has no WebGPU (navigator.gpu is missing)" };
  if (!hasJspi()) {
    return { driver: null, reason: "this browser lacks JavaScript Promise Integration (WebAssembly.Suspending), " +
      "which the engine needs to wait for GPU results" };
  }
  let adapter;
  try {
    adapter = await gpu.requestAdapter({ powerPreference });
  } catch (err) {
    return { driver: null, reason: `requestAdapter failed: ${err.message}` };
  }
  if (!adapter) return { driver: null, reason: "navigator.gpu gave no adapter" };
  const name = adapterName(adapter);
  const lim = adapter.limits;
  const limits = { maxBinding: lim.maxStorageBufferBindingSize, maxBuffer: lim.maxBufferSize,
    maxStorageBuffers: lim.maxStorageBuffersPerShaderStage };
  const hasF16 = Boolean(f16) && adapter.features.has("shader-f16");
  let device;
  try {
    device = await adapter.requestDevice({
      requiredFeatures: hasF16 ? ["shader-f16"] : [],
      requiredLimits: { maxStorageBufferBindingSize: limits.maxBinding, maxBufferSize: limits.maxBuffer,
        maxStorageBuffersPerShaderStage: limits.maxStorageBuffers },
    });
  } catch (err) {
    return { driver: null, reason: `cannot open the WebGPU device on ${name}: ${err.message}` };
  }
  const software = Boolean(adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter) ||
    /swiftshader|llvmpipe|lavapipe|warp/i.test(`${adapter.info?.architecture} ${adapter.info?.description}`);
  return { driver: new WebGpuDriver(device, { adapterName: name, isSoftware: software, hasF16, limits }), reason: "" };
}

/** Bytes of ``data`` as a Uint8Array for the duration of ``fn``: a Pyodide buffer proxy (bytes, bytearray,
 * memoryview: a view of the wasm heap, no copy), an ArrayBuffer or a typed array. */
function withBytes(data, fn) {
  if (data && typeof data.getBuffer === "function") {
    const buf = data.getBuffer("u8");
    try {
      return fn(buf.data);
    } finally {
      buf.release();
    }
  }
  if (data instanceof ArrayBuffer) return fn(new Uint8Array(data));
  if (ArrayBuffer.isView(data)) return fn(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  if (data === undefined || data === null) return fn(new Uint8Array(0));
  throw new TypeError("expected bytes");
}

/** Int32 values of ``data`` (a copy; empty for null/undefined). */
function int32s(data) {
  return withBytes(data, (u8) => new Int32Array(u8.slice().buffer));
}

export class WebGpuDriver {
  constructor(device, { adapterName, isSoftware, hasF16, limits }) {
    this.device = device;
    this.queue = device.queue;
    this.adapterName = adapterName;
    this.isSoftware = isSoftware;
    this.hasF16 = hasF16;
    this.limits = limits;
    this.destroyed = false;
    this.buffers = [];
    this.pipelines = [];
    this.bindGroups = new Map();
    this.plans = new Map();
    this.params = null;
    this.paramsSlots = 0;
    this.generation = 0; // bumps when the parameter buffer is replaced (every bind group refers to it)
    this.staging = null;
    this.error = null;
    this.lost = null;
    this.stats = { runs: 0, decodes: 0, bytesRead: 0, bytesWritten: 0 };
    device.addEventListener("uncapturederror", (event) => {
      if (!this.error) this.error = event.error?.message || String(event.error);
    });
    device.lost.then((info) => {
      if (!this.destroyed) this.lost = info.message || info.reason || "device lost";
    });
  }

  _check() {
    if (this.destroyed) throw new Error("the WebGPU device was closed");
    if (this.lost) throw new Error(`the WebGPU device was lost: ${this.lost}`);
    if (this.error) {
      const err = this.error;
      this.error = null;
      throw new Error(err);
    }
  }

  /** A zeroed storage buffer of ``nbytes`` (a multiple of 4); returns its id. */
  buffer(nbytes, label) {
    this._check();
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.buffers.push(this.device.createBuffer({ size: nbytes, usage, label: String(label) }));
    return this.buffers.length - 1;
  }

  /** Copy ``data`` into buffer ``id`` at byte ``offset``; a ragged tail is padded with zeros to 4 bytes. */
  write(id, offset, data) {
    this._check();
    withBytes(data, (u8) => this._write(this.buffers[id], offset, u8));
  }

  _write(buffer, offset, u8) {
    if (u8.byteLength % 4) {
      const padded = new Uint8Array(u8.byteLength + 4 - (u8.byteLength % 4));
      padded.set(u8);
      u8 = padded;
    }
    for (let pos = 0; pos < u8.byteLength; pos += WRITE_CHUNK) {
      const n = Math.min(WRITE_CHUNK, u8.byteLength - pos);
      this.queue.writeBuffer(buffer, offset + pos, u8, pos, n);
    }
    this.stats.bytesWritten += u8.byteLength;
  }

  /** Compile WGSL ``code`` (entry point ``main``); returns the pipeline's id. */
  pipeline(code, label) {
    this._check();
    const module = this.device.createShaderModule({ code: String(code), label: String(label) });
    this.pipelines.push(this.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" },
      label: String(label) }));
    return this.pipelines.length - 1;
  }

  _paramsBuffer(nSlots) {
    if (nSlots > this.paramsSlots) {
      this.paramsSlots = Math.max(nSlots, 2 * this.paramsSlots, 64);
      // the old buffer is dropped, not destroyed: passes submitted before may still be using it
      this.params = this.device.createBuffer({ size: this.paramsSlots * PARAM_SLOT,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: "params" });
      this.bindGroups.clear();
      this.generation++;
    }
    return this.params;
  }

  _bindGroup(pipelineId, slot, bufferIds) {
    const key = `${pipelineId}:${slot}:${bufferIds.join(",")}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      const entries = [{ binding: 0, resource: { buffer: this.params, offset: slot * PARAM_SLOT, size: PARAM_SLOT } }];
      bufferIds.forEach((id, i) => entries.push({ binding: i + 1, resource: { buffer: this.buffers[id] } }));
      group = this.device.createBindGroup({ layout: this.pipelines[pipelineId].getBindGroupLayout(0), entries });
      this.bindGroups.set(key, group);
    }
    return group;
  }

  /** A plan's structure from int32s: per dispatch (pipeline, n buffers, gx, gy, gz, buffer ids...). */
  _decode(d) {
    const steps = [];
    for (let i = 0; i < d.length;) {
      const n = d[i + 1];
      steps.push({ pipeline: d[i], groups: [d[i + 2], d[i + 3], d[i + 4]], buffers: Array.from(d.subarray(i + 5, i + 5 + n)) });
      i += 5 + n;
    }
    this.stats.decodes++;
    return { steps, generation: -1, pipelines: null, groups: null };
  }

  _resolve(plan) {
    plan.pipelines = plan.steps.map((s) => this.pipelines[s.pipeline]);
    plan.groups = plan.steps.map((s, slot) => this._bindGroup(s.pipeline, slot, s.buffers));
    plan.generation = this.generation;
  }

  /**
   * One call from Python per plan: the queued writes (``writeMeta``: int32 (buffer, offset, size) triples, their
   * bytes end to end in ``writeData``), then plan ``planId`` (-1: none) with ``params`` (one 256-byte slot per
   * dispatch) in one compute pass (``desc``: its packed structure, given the first time Python uses this id), then
   * the ``reads`` ranges (int32 (buffer, offset, size) triples) copied out.  Returns a promise of the read bytes end
   * to end, or of an empty array once the queue has finished the plan when nothing is read (a synchronisation, as
   * natively); null when there were only writes.  Everything Python passed is consumed before this returns.
   */
  run(writeMeta, writeData, planId, desc, params, reads) {
    this._check();
    const w = int32s(writeMeta);
    if (w.length) {
      withBytes(writeData, (u8) => {
        for (let i = 0, pos = 0; i < w.length; i += 3) {
          this._write(this.buffers[w[i]], w[i + 1], u8.subarray(pos, pos + w[i + 2]));
          pos += w[i + 2];
        }
      });
    }
    if (planId >= 0) {
      let plan = desc ? null : this.plans.get(planId);
      if (!plan) {
        if (!desc) throw new Error(`unknown plan ${planId}`);
        plan = this._decode(int32s(desc));
        this.plans.set(planId, plan);
      }
      withBytes(params, (u8) => this._runPlan(plan, u8));
    }
    const r = int32s(reads);
    if (!r.length) return planId >= 0 ? this._done() : null;
    const spans = [];
    let total = 0;
    let want = 0;
    for (let i = 0; i < r.length; i += 3) {
      spans.push({ buffer: this.buffers[r[i]], offset: r[i + 1], at: total, n: r[i + 2] });
      total += (r[i + 2] + 3) & ~3; // copies move whole words; buffers are rounded up to 4 bytes
      want += r[i + 2];
    }
    const staging = this._stagingBuffer(total);
    const encoder = this.device.createCommandEncoder();
    for (const s of spans) encoder.copyBufferToBuffer(s.buffer, s.offset, staging, s.at, (s.n + 3) & ~3);
    this.queue.submit([encoder.finish()]);
    return this._readback(staging, total, spans, want);
  }

  async _done() {
    await this.queue.onSubmittedWorkDone();
    this._check();
    return new Uint8Array(0);
  }

  _runPlan(plan, params) {
    const n = plan.steps.length;
    const paramsBuf = this._paramsBuffer(n);
    if (plan.generation !== this.generation) this._resolve(plan);
    this.queue.writeBuffer(paramsBuf, 0, params, 0, n * PARAM_SLOT);
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (let i = 0; i < n; i++) {
      const g = plan.steps[i].groups;
      pass.setPipeline(plan.pipelines[i]);
      pass.setBindGroup(0, plan.groups[i]);
      pass.dispatchWorkgroups(g[0], g[1], g[2]);
    }
    pass.end();
    this.queue.submit([encoder.finish()]);
    this.stats.runs++;
  }

  _stagingBuffer(size) {
    if (!this.staging || this.staging.size < size) {
      this.staging?.destroy(); // runs are sequential: the previous readback is over
      this.staging = this.device.createBuffer({ size: Math.max(size, 1 << 16),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: "staging" });
    }
    return this.staging;
  }

  async _readback(staging, total, spans, want) {
    await staging.mapAsync(GPUMapMode.READ, 0, total);
    const out = new Uint8Array(want);
    try {
      const src = new Uint8Array(staging.getMappedRange(0, total));
      let pos = 0;
      for (const s of spans) {
        out.set(src.subarray(s.at, s.at + s.n), pos);
        pos += s.n;
      }
    } finally {
      staging.unmap();
    }
    this.stats.bytesRead += want;
    this._check();
    return out;
  }

  /** Release the device and everything on it. */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.plans.clear();
    this.bindGroups.clear();
    this.device.destroy();
    this.buffers = [];
    this.pipelines = [];
  }
}
