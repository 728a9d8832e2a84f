import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { processStartTime } from '../process/proc-stat.ts';

/**
 * What a container worker owns on its host, recorded where every worker of the host looks
 * (`hostRegistryDir`, default `/run/baton/workers`, a tmpfs that goes with a reboot, as do the
 * namespaces and cgroups it describes): one file per worker tag, written before the worker makes
 * its bridge, table and namespaces. A worker that restarts with its own id finds its own leftovers
 * (see ContainerRuntime.cleanupLeftovers); this is how a worker started with a *new* id finds what
 * a dead one left: a record whose process is gone, or whose pid is now another process (the start
 * time in `/proc/<pid>/stat` differs), is of a dead worker. A live worker's record is never touched.
 */
export const WorkerRecordSchema = z.object({
  workerId: z.string(),
  pid: z.number().int().positive(),
  /** Field 22 of `/proc/<pid>/stat` when the worker started: with the pid, one process for the life of the host. */
  startTime: z.string(),
  /** The six hex digits in its host objects' names (cgroups `baton-<tag>`, namespaces, `bt<tag>`, `bv<tag>N`, table `baton_<tag>`). */
  tag: z.string().regex(/^[0-9a-f]{6}$/),
  /** The container runtime's directory (crun's state, bundles). */
  containerDir: z.string(),
  ociRuntime: z.string(),
  subnet: z.string(),
  /** The worker's `/proc/self/cgroup`: where its sandbox cgroups are. */
  procCgroup: z.string(),
});
export type WorkerRecord = z.infer<typeof WorkerRecordSchema>;

/** A dead worker's record, claimed by this process (no other worker cleans up after it too). */
export interface DeadWorker {
  readonly record: WorkerRecord;
  /** Removes the claimed record: call once what it owned is gone. */
  done(): Promise<void>;
}

export class HostRegistry {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = path.resolve(dir);
  }

  get dir(): string {
    return this.#dir;
  }

  /** Records this worker (replacing the record of an earlier run with the same tag). */
  async register(record: WorkerRecord): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const file = this.#file(record.tag);
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
    await rename(tmp, file);
  }

  /** Removes this process's record of `tag` (a worker that stopped and took its sandboxes with it). */
  async unregister(tag: string): Promise<void> {
    const file = this.#file(tag);
    const record = await readRecord(file);
    if (record?.pid === process.pid) await rm(file, { force: true });
  }

  /**
   * The records of dead workers other than `ownTag`, each claimed by renaming it (a worker starting
   * at the same time finds it gone and leaves it). A record that cannot be read is left alone.
   */
  async claimDead(ownTag: string): Promise<DeadWorker[]> {
    const names = await readdir(this.#dir).catch(() => [] as string[]);
    const dead: DeadWorker[] = [];
    for (const name of names) {
      if (!name.endsWith('.json') || name === `${ownTag}.json`) continue;
      const file = path.join(this.#dir, name);
      const record = await readRecord(file);
      if (record === undefined || record.tag === ownTag || await isAlive(record)) continue;
      const claimed = `${file}.claimed-${process.pid}`;
      try {
        await rename(file, claimed);
      } catch {
        continue;
      }
      dead.push({ record, done: () => rm(claimed, { force: true }) });
    }
    return dead;
  }

  #file(tag: string): string {
    return path.join(this.#dir, `${tag}.json`);
  }
}

async function readRecord(file: string): Promise<WorkerRecord | undefined> {
  try {
    const parsed = WorkerRecordSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The recorded process still runs (the same pid with the same start time). */
export async function isAlive(record: Pick<WorkerRecord, 'pid' | 'startTime'>): Promise<boolean> {
  return await processStartTime(record.pid) === record.startTime;
}
