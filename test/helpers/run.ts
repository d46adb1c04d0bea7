// A Node program run as a child process by a test: its output collected, its last stdout line read as its
// report (the fixtures print their findings as one JSON line last), SIGKILLed if it outlives its time.
import { spawn } from 'node:child_process';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The last line of stdout parsed as JSON (the program's report), or null. */
  report: any;
  ms: number;
}

/** Runs `node ...args` in `cwd` with `env` added to this process's environment; kills it after `timeoutMs`. */
export function runNode(args: string[], opts: { cwd: string; env: Record<string, string>; timeoutMs?: number }): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      let report: any = null;
      try {
        report = JSON.parse(stdout.trim().split('\n').pop() ?? '');
      } catch {
        /* not a report: the assertions show stdout and stderr */
      }
      resolve({ code, signal, stdout, stderr, report, ms: performance.now() - t0 });
    });
  });
}
