// A local wasi:http@0.3 host for the Spin component's key-value build (tests and by hand):
// the jco-transpiled component (scripts/build/spin.sh writes build/flashgate_spin_kv.js) served
// by preview3-shim's HttpServer on 127.0.0.1:$PORT, spin:key-value mapped to ./spin-kv.js (in
// memory). Settings reach the component as environment variables, as Spin's `environment`
// gives them. Needs Node with JSPI (Node 26, installed beside this file). It serves one request
// at a time.
const port = Number(process.env.PORT || 3000);
const component = await import(process.env.COMPONENT_JS || './build/flashgate_spin_kv.js');
const { HttpServer } = await import('@bytecodealliance/preview3-shim/http');

const handler = {
  handle: async (request) => {
    try {
      const response = await component.handler.handle(request);
      return response && response.tag ? response : { tag: 'ok', val: response };
    } catch (e) {
      console.error('flashgate kv host: the component failed', e);
      return { tag: 'err', val: e?.payload ?? { tag: 'internal-error', val: String(e) } };
    }
  },
};
const server = new HttpServer(handler);
server.on('error', (e) => console.error('flashgate kv host: server error', e));
await server.listen(port, '127.0.0.1');
console.error(`flashgate kv host: listening on 127.0.0.1:${port}`);
