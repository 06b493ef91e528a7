// Starts `cloudsec up` for the browser tests: a temporary data directory,
// every listener on port 0, the gateway's address read from the banner,
// readiness by polling the gateway (never a sleep), and the confirmation
// codes read from the platform's log.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const CONFIG = `
[auth]
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[documents]
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[audit]
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[gateway]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
`;

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

export class Platform {
  constructor({ repo, binary }) {
    this.repo = repo;
    this.binary = binary ?? resolve(repo, 'target/debug/cloudsec');
    this.work = mkdtempSync(join(tmpdir(), 'cloudsec-web-e2e-'));
    this.out = '';
    this.err = '';
    this.base = '';
    this.child = null;
  }

  get log() {
    return (this.out + '\n' + this.err).replace(ANSI, '');
  }

  async start(timeoutMs = 120_000) {
    if (!existsSync(this.binary)) {
      throw new Error(`${this.binary} is missing: build it with 'cargo build -p cloudsec'`);
    }
    const config = join(this.work, 'config.toml');
    writeFileSync(config, CONFIG);
    // From the repository root, so that `up` finds web/dist and serves it.
    this.child = spawn(this.binary, ['up', '--data-dir', join(this.work, 'data'), '--config', config], {
      cwd: this.repo,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout.setEncoding('utf8').on('data', (d) => (this.out += d));
    this.child.stderr.setEncoding('utf8').on('data', (d) => (this.err += d));
    const exited = new Promise((_, reject) =>
      this.child.once('exit', (code, signal) =>
        reject(new Error(`cloudsec up exited (${code ?? signal}) before it was ready:\n${this.tail()}`)),
      ),
    );
    exited.catch(() => undefined);
    const deadline = Date.now() + timeoutMs;
    const ready = (async () => {
      while (!this.base) {
        const m = /REST gateway\s+(http:\/\/\S+)/.exec(this.out);
        if (m) this.base = m[1];
        else if (Date.now() > deadline) throw new Error(`no 'REST gateway' line from cloudsec up:\n${this.tail()}`);
        else await sleep(100);
      }
      // Ready when the gateway answers through to the auth service.
      for (;;) {
        try {
          const r = await fetch(`${this.base}/.well-known/jwks.json`);
          if (r.ok && ((await r.json()).keys ?? []).length > 0) return;
        } catch {
          /* not yet */
        }
        if (Date.now() > deadline) throw new Error(`the gateway at ${this.base} never became ready:\n${this.tail()}`);
        await sleep(100);
      }
    })();
    await Promise.race([ready, exited]);
    return this.base;
  }

  tail(lines = 40) {
    return this.log.split('\n').slice(-lines).join('\n');
  }

  /** Warnings and errors the platform logged, for the failure report. */
  problems() {
    return this.log
      .split('\n')
      .filter((l) => /\b(WARN|ERROR)\b|"level":"(WARN|ERROR)"/.test(l))
      .slice(-40)
      .join('\n');
  }

  /**
   * The newest confirmation code the development mailer logged for this
   * email ("confirmation code ... code=NNNNNN"), waiting for it to appear.
   * `after` skips the codes counted before (a resend or a reset).
   */
  async codeFor(email, { after = 0, timeoutMs = 30_000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const codes = this.codesFor(email);
      if (codes.length > after) return codes[codes.length - 1];
      if (Date.now() > deadline) throw new Error(`no confirmation code for ${email} in the log:\n${this.tail()}`);
      await sleep(100);
    }
  }

  codesFor(email) {
    const codes = [];
    for (const line of this.log.split('\n')) {
      if (!line.includes('confirmation code')) continue;
      if (!line.includes(email)) continue;
      const m = /\bcode["=:\s]+"?(\d{6})\b/.exec(line);
      if (m) codes.push(m[1]);
    }
    return codes;
  }

  async stop() {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(this.work, { recursive: true, force: true });
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
