// Where the page's data comes from: the live server's JSON API, or the files a static export wrote.
// Both expose the same methods returning the same payloads (built by polylens.explorer.api).
// An input is {sample: i} (a test sample) or {x: [...]} (a drawn input).

export class ApiError extends Error {}

/** The live server: fetch() against /api/..., each call abortable. */
export function liveSource(config) {
  const base = config.api || "api/";
  async function call(path, {method = "GET", body, signal} = {}) {
    const res = await fetch(base + path, {
      method, signal, headers: body ? {"Content-Type": "application/json"} : undefined,
      body: body ? JSON.stringify(body) : undefined,
    });
    let data;
    try {
      data = await res.json();
    } catch (e) {
      throw new ApiError(`the server answered ${res.status} without JSON`);
    }
    if (!res.ok) throw new ApiError(data.error || `HTTP ${res.status}`);
    return data;
  }
  return {
    live: true,
    grid: null,
    model: () => call("model"),
    samples: () => call("samples"),
    forward: (input, signal) => call("forward", {method: "POST", body: input, signal}),
    bounds: (input, eps, signal) => call("bounds", {method: "POST", body: {...input, eps}, signal}),
    certify: (input, eps, signal) => call("certify", {method: "POST", body: {...input, eps}, signal}),
    robust: (eps, signal) => call(`robust?eps=${encodeURIComponent(eps)}`, {signal}),
    sweep: (signal) => call("sweep", {signal}),
    neuron: (layer, j, signal) => call(`neuron/${layer}/${j}`, {signal}),
    rename: (layer, neuron, name) => call("rename", {method: "POST", body: {layer, neuron, name}}),
    signatures: (signal) => call("signatures", {signal}),
    prototypes: (signal) => call("prototypes", {signal}),
    trace: (input, target, signal) => call("trace", {method: "POST", body: {...input, target}, signal}),
  };
}

/**
 * A static export: data/<chunk>.js files, each calling window.polylensData(name, payload). Loaded
 * with <script> tags, which work over http and over file:// alike (fetch() of local files does not).
 */
export function staticSource(config) {
  const waiting = new Map();
  const loaded = new Map();
  window.polylensData = (name, data) => {
    loaded.set(name, data);
    const w = waiting.get(name);
    if (w) { waiting.delete(name); w.resolve(data); }
  };
  function chunk(name) {
    if (loaded.has(name)) return Promise.resolve(loaded.get(name));
    if (waiting.has(name)) return waiting.get(name).promise;
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    waiting.set(name, {promise, resolve, reject});
    const el = document.createElement("script");
    el.src = `data/${name}.js`;
    el.onerror = () => { waiting.delete(name); reject(new ApiError(`missing data file data/${name}.js`)); };
    document.head.appendChild(el);
    return promise;
  }
  const core = () => chunk("core");
  const sampleChunk = (input) => {
    if (input.x) throw new ApiError("this static site has no server: only the exported samples can be shown");
    return chunk(`sample-${input.sample}`);
  };
  const gridIndex = (grid, eps) => {
    let best = 0;
    grid.forEach((e, i) => { if (Math.abs(e - eps) < Math.abs(grid[best] - eps)) best = i; });
    return best;
  };
  const names = () => JSON.parse(localStorage.getItem(`polylens-names:${config.model_id}`) || "{}");
  const src = {
    live: false,
    grid: config.eps_grid,
    async model() {
      const m = structuredClone((await core()).model);
      const local = names();
      m.layers.forEach((layer) => layer.neurons.forEach((n) => {
        if (local[n.key] !== undefined) { n.name = local[n.key] || n.key; n.named = !!local[n.key]; }
      }));
      return m;
    },
    samples: async () => (await core()).samples,
    forward: async (input) => (await sampleChunk(input)).forward,
    async bounds(input, eps) {
      const c = await sampleChunk(input);
      return c.bounds[gridIndex(config.eps_grid, eps)];
    },
    async certify(input, eps) {
      const c = await sampleChunk(input);
      return {...c.certify[gridIndex(config.eps_grid, eps)], precomputed: true};
    },
    async robust(eps) {
      const c = await core();
      return c.robust[gridIndex(config.eps_grid, eps)];
    },
    sweep: async () => (await core()).sweep,
    async neuron(layer, j) {
      const p = structuredClone((await core()).neurons[`L${layer}.n${j}`]);
      const local = names();
      if (local[p.key] !== undefined) { p.name = local[p.key] || p.key; p.named = !!local[p.key]; }
      return p;
    },
    async rename(layer, neuron, name) {
      const local = names();
      local[`L${layer}.n${neuron}`] = name.trim();
      localStorage.setItem(`polylens-names:${config.model_id}`, JSON.stringify(local));
      return {key: `L${layer}.n${neuron}`, name, saved_to: null, storage: "browser",
              note: "kept in this browser only (static site)"};
    },
    signatures: async () => (await core()).signatures,
    prototypes: async () => (await core()).prototypes,
    async trace(input, target) {
      const c = await sampleChunk(input);
      const k = target ?? c.forward.prediction;
      const formulas = (await core()).formulas || {};
      return {...c.trace[k], formula: formulas[String(k)] ?? null};
    },
  };
  return src;
}
