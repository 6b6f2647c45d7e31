// flashgate's proof-of-work solver, run in a Web Worker so the page never freezes.
// The same puzzle as core/src/pow.rs: find a nonce such that
//   SHA-256(challenge token bytes ‖ nonce as an 8-byte big-endian integer)
// starts with at least `bits` zero bits. Expected cost: 2^bits hashes.
// In:  {challenge, bits}        Out: {progress: tries} … then {nonce, tries} (or {error}).
'use strict';

const BATCH = 256;

function leadingZeroBits(bytes) {
  let bits = 0;
  for (const b of bytes) {
    if (b === 0) { bits += 8; continue; }
    return bits + Math.clz32(b) - 24;
  }
  return bits;
}

async function solve(challenge, bits) {
  const prefix = new TextEncoder().encode(challenge);
  const inputs = [];
  for (let i = 0; i < BATCH; i++) {
    const buf = new Uint8Array(prefix.length + 8);
    buf.set(prefix);
    inputs.push(buf);
  }
  let next = 0;
  let tries = 0;
  let lastReport = 0;
  for (;;) {
    const batch = inputs.map((buf) => {
      const nonce = next++;
      const view = new DataView(buf.buffer, prefix.length, 8);
      view.setUint32(0, Math.floor(nonce / 0x100000000));
      view.setUint32(4, nonce >>> 0);
      return crypto.subtle.digest('SHA-256', buf.slice()).then((h) => [nonce, h]);
    });
    const hashes = await Promise.all(batch);
    tries += hashes.length;
    for (const [nonce, hash] of hashes) {
      if (leadingZeroBits(new Uint8Array(hash)) >= bits) {
        return { nonce, tries };
      }
    }
    const now = Date.now();
    if (now - lastReport > 100) {
      lastReport = now;
      self.postMessage({ progress: tries });
    }
  }
}

self.onmessage = async (event) => {
  const { challenge, bits } = event.data;
  try {
    self.postMessage(await solve(challenge, bits));
  } catch (e) {
    self.postMessage({ error: String(e && e.message ? e.message : e) });
  }
};
