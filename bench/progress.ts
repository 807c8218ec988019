// Progress lines on stderr, stamped with the seconds since the benchmark started (stdout
// carries only the report).

const started = Date.now();

export function elapsedSeconds(): number {
  return (Date.now() - started) / 1000;
}

export function progress(line: string): void {
  process.stderr.write(`[${elapsedSeconds().toFixed(0).padStart(4)}s] ${line}\n`);
}
