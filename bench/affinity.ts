// CPU affinity through taskset (util-linux): the one-core scenario pins the bench process, and
// the peers it forks inherit the mask.
import { execFileSync } from 'node:child_process';

/** The CPU affinity mask of `pid` (hex, as taskset prints it), or undefined without taskset. */
export function affinityOf(pid: number): string | undefined {
  try {
    const out = execFileSync('taskset', ['-p', String(pid)], { encoding: 'utf8' });
    return /:\s*([0-9a-f,]+)\s*$/i.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

/** The mask of the lowest CPU in `mask` (e.g. "c" -> "4"): a run may not be allowed CPU 0. */
export function lowestCpuOf(mask: string): string {
  const bits = BigInt(`0x${mask.replace(/,/g, '')}`);
  if (bits === 0n) throw new Error(`no CPU in the affinity mask ${mask}`);
  return (bits & -bits).toString(16);
}

/** Pins every thread of `pid` (taskset -a); throws if taskset refuses. */
export function setAffinity(pid: number, hexMask: string): void {
  execFileSync('taskset', ['-a', '-p', hexMask, String(pid)], { stdio: 'ignore' });
}
