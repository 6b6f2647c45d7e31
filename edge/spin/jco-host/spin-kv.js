// spin:key-value/key-value@3.0.0 in memory, for the jco-transpiled key-value build of the Spin
// component: one Map per store label, living as long as the host process (as a Spin store
// outlives its instances). Labels allowed: SPIN_KV_STORES (comma separated, default "default"),
// like `key_value_stores` in spin.toml.
const stores = new Map();
const refuse = (payload) => Object.assign(new Error(payload.tag), { payload });

export class Store {
  #map;
  constructor(map) {
    this.#map = map;
  }
  static async open(label) {
    const allowed = (process.env.SPIN_KV_STORES || 'default').split(',');
    if (!allowed.includes(label)) throw refuse({ tag: 'no-such-store' });
    if (!stores.has(label)) stores.set(label, new Map());
    return new Store(stores.get(label));
  }
  async get(key) {
    return this.#map.get(key);
  }
  async set(key, value) {
    this.#map.set(key, new Uint8Array(value));
  }
  async delete(key) {
    this.#map.delete(key);
  }
  async exists(key) {
    return this.#map.has(key);
  }
  async getKeys() {
    return [...this.#map.keys()];
  }
}
