// Where the page's data comes from: the live server's JSON API, or the files a static export wrote.
// Both expose the same methods returning the same payloads (built by polylens.explorer.api).
// An input is {sample: i} (a test sample) or {x: [...]} (a drawn input). Every analysis is asked
// through lens(name, kind, params): POST /api/lens/<name>[/<kind>] live, the precomputed answer filed
// under the same parameters in a static export.

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
    rename: (layer, neuron, name) => call("rename", {method: "POST", body: {layer, neuron, name}}),
    lens: (name, kind, params, signal) =>
      call(`lens/${encodeURIComponent(name)}${kind && kind !== "main" ? `/${encodeURIComponent(kind)}` : ""}`,
           {method: "POST", body: params || {}, signal}),
    moduleUrl: (lens) => `lens/${lens.name}/${lens.module}`,
  };
}

/** The key a static export files an answer under (polylens.explorer.api.canonical_key makes the same). */
function keyOf(params) {
  const parts = Object.keys(params).sort().filter((k) => params[k] !== null && params[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${JSON.stringify(params[k])}`);
  return `{${parts.join(",")}}`;
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
  const nearest = (grid, eps) => grid.reduce((b, e) => (Math.abs(e - eps) < Math.abs(b - eps) ? e : b));
  const gridIndex = (grid, eps) => grid.indexOf(nearest(grid, eps));
  const names = () => JSON.parse(localStorage.getItem(`polylens-names:${config.model_id}`) || "{}");
  const withLocalNames = (p) => {
    const local = names();
    if (p && p.key && local[p.key] !== undefined) { p.name = local[p.key] || p.key; p.named = !!local[p.key]; }
    return p;
  };
  const catalog = async () => (await core()).model.lenses;
  return {
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
    async rename(layer, neuron, name) {
      const local = names();
      local[`L${layer}.n${neuron}`] = name.trim();
      localStorage.setItem(`polylens-names:${config.model_id}`, JSON.stringify(local));
      return {key: `L${layer}.n${neuron}`, name, saved_to: null, storage: "browser",
              note: "kept in this browser only (static site)"};
    },
    /** The answer precomputed for these parameters (a radius snaps to the nearest exported one). */
    async lens(name, kind, params) {
      kind = kind || "main";
      const entry = (await catalog()).find((l) => l.name === name);
      if (!entry || !entry.payloads[kind]) throw new ApiError(`the lens ${name} has no payload ${kind}`);
      const {sample, x, ...rest} = params || {};
      if (rest.eps !== undefined && rest.eps !== null) rest.eps = nearest(config.eps_grid, +rest.eps);
      const key = keyOf(rest);
      let table;
      if (entry.payloads[kind].per_input) {
        table = ((await sampleChunk(x ? {x} : {sample})).lens || {})[`${name}/${kind}`] || {};
      } else {
        table = ((await chunk(`lens-${name}`)) || {})[kind] || {};
      }
      if (!(key in table)) throw new ApiError(`not precomputed in this static site: ${name} ${kind} ${key}`);
      return withLocalNames({...structuredClone(table[key]), precomputed: true});
    },
    moduleUrl: (lens) => `lens/${lens.name}/${lens.module}`,
  };
}
