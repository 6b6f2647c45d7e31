// The storefront's static files: every hashed asset is named after its content (so a year of
// caching is safe), the page refers only to them, web/ is what scripts/build/web.sh builds from
// web/src/, and nothing is loaded from another origin (no fonts, CDNs or trackers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const web = new URL('../../web/', import.meta.url).pathname;

test('each asset name carries the hash of its content', () => {
  const names = readdirSync(join(web, 'assets'));
  assert.ok(names.length >= 3, `assets: ${names}`);
  for (const name of names) {
    const m = /^[a-z]+\.([0-9a-f]{10})\.(js|css)$/.exec(name);
    assert.ok(m, `${name} is not NAME.HASH.EXT`);
    const hash = createHash('sha256').update(readFileSync(join(web, 'assets', name))).digest('hex');
    assert.equal(m[1], hash.slice(0, 10), `${name} does not match its content`);
  }
});

test('the page refers to existing hashed assets only, all on this origin', () => {
  const html = readFileSync(join(web, 'index.html'), 'utf8');
  // (The favicon is an empty data: URL, so that browsers do not ask for /favicon.ico.)
  const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((r) => r !== 'data:,');
  assert.ok(refs.length >= 2, `refs: ${refs}`);
  for (const ref of refs) {
    assert.match(ref, /^\/assets\/[a-z]+\.[0-9a-f]{10}\.(js|css)$/);
    readFileSync(join(web, ref)); // exists
  }
  for (const name of ['index.html', ...readdirSync(join(web, 'assets')).map((n) => `assets/${n}`)]) {
    const text = readFileSync(join(web, name), 'utf8');
    assert.doesNotMatch(text, /https?:\/\/|["'(]\/\/[a-z]/i, `${name} loads something from elsewhere`);
  }
});

test('web/ is what scripts/build/web.sh builds from web/src/', () => {
  execFileSync('bash', ['scripts/build/web.sh', '--check'], {
    cwd: new URL('../../', import.meta.url).pathname,
    stdio: 'inherit',
  });
});
