import { existsSync, readdirSync } from 'node:fs';

/** Every segment this test run creates starts with this, so runs and tests never collide. */
export const NAME_PREFIX = `/shmch-test-${process.pid}-`;

let counter = 0;

/** A fresh POSIX shm name, unique within this run: `/shmch-test-<pid>-<label>-<n>`. */
export function uniqueName(label = 't'): string {
  counter += 1;
  return `${NAME_PREFIX}${label}-${counter}`;
}

/** Names of the /dev/shm entries that start with `prefix` (given with or without its '/'). */
export function shmEntries(prefix: string = NAME_PREFIX): string[] {
  const base = prefix.replace(/^\//, '');
  return readdirSync('/dev/shm').filter((entry) => entry.startsWith(base));
}

/** True if the segment `name` (e.g. '/x') exists in /dev/shm. */
export function shmExists(name: string): boolean {
  return existsSync(`/dev/shm${name}`);
}
