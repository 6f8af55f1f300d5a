// The npm package's tarball: package.json's `files` copied into a staging folder with
// www/README.md (the README for npm: install, the CDN, bundlers, error codes) as its README.md,
// and `npm pack` run there. npm always packs the package root's README.md, which here is the
// project's; packing from the staging folder is how the tarball gets the one for npm instead.
//   node tools/pack.mjs [DESTINATION]     prints the tarball's path (DESTINATION: default .)
//   npm publish "$(node tools/pack.mjs /tmp)"
// `npm pack` or `npm publish` at the repository's root would pack the project's README: its
// `prepack` script (`node tools/pack.mjs --refuse`) stops them and points here.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(new URL('..', import.meta.url).pathname);

/** Packs the package into `destination`; gives the tarball's path. */
export function pack(destination = '.') {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const staging = mkdtempSync(join(tmpdir(), 'wordmask-pack-'));
  try {
    for (const entry of manifest.files) cpSync(join(ROOT, entry), join(staging, entry), { recursive: true });
    // Without the repository's scripts (its build, its tests, the refusal below): none of them
    // is in the package.
    const { scripts, ...packed } = manifest;
    writeFileSync(join(staging, 'package.json'), `${JSON.stringify(packed, null, 2)}\n`);
    cpSync(join(ROOT, 'www/README.md'), join(staging, 'README.md'));
    // Scripts off: the staging folder is not the repository (and `prepack` refuses).
    const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', resolve(destination)], { cwd: staging, encoding: 'utf8' });
    return join(resolve(destination), JSON.parse(out)[0].filename);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  if (process.argv[2] === '--refuse') {
    console.error("pack the npm package with `node tools/pack.mjs [DESTINATION]`: it packs www/README.md as the package's README (npm pack here would pack the project's)");
    process.exit(1);
  }
  console.log(pack(process.argv[2]));
}
