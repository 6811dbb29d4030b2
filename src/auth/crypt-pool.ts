// Worker threads for the CPU-bound crypt(3) formats: SHA-crypt (`$5$`, `$6$`, via unixcrypt) and bcrypt
// (`$2a$`, `$2b$`, `$2y$`, via bcryptjs). Both libraries are pure JavaScript and synchronous: SHA512-CRYPT
// at Dovecot's default 5,000 rounds costs ~10 ms here, at `rounds=500000` about a second, and bcrypt
// cost 12 a quarter of a second, all of which would stall every other connection of the daemon if run on
// the main thread. Argon2 needs no pool: @node-rs/argon2 already runs on libuv's thread pool.
//
// The worker only *computes* crypt(password, setting); the caller compares the result with the stored
// string using crypto.timingSafeEqual. A task that runs longer than its deadline terminates its worker
// (that is the only way to stop a synchronous computation); the worker is replaced on the next call.
//
// The worker is plain JavaScript started with `eval` and no execArgv, so it runs the same from src/ under
// tsx and from the compiled dist/, and it loads the two libraries by the URLs this module resolved.
//
// Security: the password crosses to the worker by postMessage (same process, never serialized to disk
// or logs). A worker error or crash rejects the affected tasks; callers turn that into `tempfail`.

import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';

export type CryptKind = 'sha-crypt' | 'bcrypt';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
let libs;
async function load() {
  if (!libs) {
    const uc = await import(workerData.unixcrypt);
    const bc = await import(workerData.bcryptjs);
    libs = { encrypt: uc.encrypt, bcryptHash: (bc.default || bc).hashSync };
  }
  return libs;
}
parentPort.on('message', async (m) => {
  try {
    const l = await load();
    const out = m.kind === 'bcrypt' ? l.bcryptHash(m.password, m.setting) : l.encrypt(m.password, m.setting);
    parentPort.postMessage({ id: m.id, out });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
  }
});
`;

interface Task {
  resolve(out: string): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

interface Slot {
  worker: Worker;
  tasks: Map<number, Task>;
}

export class CryptPool {
  private readonly size: number;
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;

  constructor(opts: { size?: number } = {}) {
    this.size = Math.max(1, opts.size ?? Math.min(2, availableParallelism()));
  }

  /** crypt(password, setting) in a worker; rejects on worker failure or after `timeoutMs`. */
  crypt(kind: CryptKind, password: string, setting: string, timeoutMs: number): Promise<string> {
    if (this.closed) return Promise.reject(new Error('crypt pool closed'));
    const slot = this.pick();
    const id = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => this.kill(slot, new Error(`crypt took longer than ${timeoutMs} ms`)), timeoutMs);
      slot.tasks.set(id, { resolve, reject, timer });
      slot.worker.postMessage({ id, kind, password, setting });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots.splice(0);
    await Promise.all(slots.map((s) => this.kill(s, new Error('crypt pool closed'))));
  }

  /** The least busy live worker, starting one while fewer than `size` exist. */
  private pick(): Slot {
    let best: Slot | undefined;
    for (const s of this.slots) if (!best || s.tasks.size < best.tasks.size) best = s;
    if (best && (best.tasks.size === 0 || this.slots.length >= this.size)) return best;
    return this.spawn();
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      workerData: { unixcrypt: import.meta.resolve('unixcrypt'), bcryptjs: import.meta.resolve('bcryptjs') },
    });
    worker.unref(); // an idle pool never keeps the daemon (or a test run) alive
    const slot: Slot = { worker, tasks: new Map() };
    worker.on('message', (m: { id: number; out?: string; error?: string }) => {
      const t = slot.tasks.get(m.id);
      if (!t) return;
      slot.tasks.delete(m.id);
      clearTimeout(t.timer);
      if (typeof m.out === 'string') t.resolve(m.out);
      else t.reject(new Error(m.error ?? 'crypt failed'));
    });
    worker.on('error', (err) => void this.kill(slot, err));
    worker.on('exit', () => void this.kill(slot, new Error('crypt worker exited')));
    this.slots.push(slot);
    return slot;
  }

  private async kill(slot: Slot, err: Error): Promise<void> {
    const i = this.slots.indexOf(slot);
    if (i !== -1) this.slots.splice(i, 1);
    for (const t of slot.tasks.values()) {
      clearTimeout(t.timer);
      t.reject(err);
    }
    slot.tasks.clear();
    await slot.worker.terminate().catch(() => undefined);
  }
}
