// What the specs that run C and Python peers share: whether a tool is installed, the
// environment those peers get, and the check and the pattern the peers agree on.
import { spawnSync } from 'node:child_process';

/** `command` is on the PATH. */
export function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/**
 * This environment without the sanitizer's preload, plus `extra`: the C library and Python
 * are not built sanitized (under test:sanitize only the addon is).
 */
export function plainEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.LD_PRELOAD;
  delete env.ASAN_OPTIONS;
  delete env.UBSAN_OPTIONS;
  return env;
}

/** FNV-1a, 32 bits, as 8 hex digits: what the C and Python peers print of a message. */
export function fnv1a(data: Buffer): string {
  let h = 2166136261;
  for (const byte of data) h = Math.imul(h ^ byte, 16777619) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** The peers' pattern: byte i is (i * 31 + 7 + seed) % 251. */
export function peerPattern(size: number, seed = 0): Buffer {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + 7 + seed) % 251;
  return data;
}
