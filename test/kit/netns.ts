import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const run = promisify(execFile);
const IP = '/usr/sbin/ip';

/** True when this process may create network namespaces (root, iproute2 installed). */
export function canUseNetns(): boolean {
  return process.getuid?.() === 0;
}

async function ip(...args: string[]): Promise<string> {
  const { stdout } = await run(IP, args);
  return stdout;
}

/** One host of the test network: a namespace with its own address on the bridge. */
export interface Host {
  readonly name: string;
  readonly ns: string;
  /** Its one address, e.g. `10.231.7.2`; the only address it has besides loopback. */
  readonly address: string;
  /** The end of its link on the bridge side (in the test's namespace, with no address). */
  readonly link: string;
  /** `argv` run inside this host's namespace. */
  wrap(argv: readonly string[]): string[];
}

export interface TestNetwork {
  readonly hosts: ReadonlyMap<string, Host>;
  host(name: string): Host;
  /** Cuts the host's link to the bridge: it reaches nobody and nobody reaches it. */
  cut(name: string): Promise<void>;
  heal(name: string): Promise<void>;
  /** An HTTP client inside the host's namespace (the test's own namespace has no address on the network). */
  client(name: string): NetnsClient;
  destroy(): Promise<void>;
}

/**
 * Creates a bridge (no address, in the test's namespace) and one network namespace per name, each
 * joined to the bridge by a veth pair, with loopback up and one address on a /24 of its own —
 * addresses only inside the namespaces, no default route, no DNS (use IP literals). Everything is
 * deleted by `destroy` (deleting a namespace deletes its end of each pair, and with it the pair).
 */
export async function createNetwork(names: readonly string[]): Promise<TestNetwork> {
  if (names.length < 1 || names.length > 200) throw new Error('1 to 200 hosts');
  const tag = randomBytes(3).toString('hex');
  const subnet = `10.231.${randomBytes(1)[0] ?? 0}`;
  const bridge = `btb${tag}`;
  const hosts = new Map<string, Host>();
  const clients: NetnsClient[] = [];
  const created: string[] = [];
  let hasBridge = false;
  // A test process that ends before `destroy` (killed, crashed) still deletes what it made.
  const destroySync = (): void => {
    for (const ns of created) {
      try { execFileSync(IP, ['netns', 'delete', ns], { stdio: 'ignore' }); } catch { /* gone */ }
    }
    if (hasBridge) {
      try { execFileSync(IP, ['link', 'delete', bridge], { stdio: 'ignore' }); } catch { /* gone */ }
    }
  };
  process.once('exit', destroySync);
  const destroy = async (): Promise<void> => {
    process.off('exit', destroySync);
    for (const client of clients) client.close();
    for (const ns of created) await ip('netns', 'delete', ns).catch(() => undefined);
    if (hasBridge) await ip('link', 'delete', bridge).catch(() => undefined);
    created.length = 0;
    hasBridge = false;
  };
  try {
    await ip('link', 'add', bridge, 'type', 'bridge');
    hasBridge = true;
    await ip('link', 'set', bridge, 'up');
    for (const [i, name] of names.entries()) {
      const ns = `bt-${tag}-${i}`;
      const link = `vb${tag}${i}`;
      const inner = `vn${tag}${i}`;
      const address = `${subnet}.${i + 1}`;
      await ip('netns', 'add', ns);
      created.push(ns);
      await ip('link', 'add', link, 'type', 'veth', 'peer', 'name', inner);
      await ip('link', 'set', inner, 'netns', ns);
      await ip('link', 'set', link, 'master', bridge);
      await ip('link', 'set', link, 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', inner);
      await ip('-n', ns, 'link', 'set', inner, 'up');
      hosts.set(name, { name, ns, address, link, wrap: (argv) => [IP, 'netns', 'exec', ns, ...argv] });
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  const host = (name: string): Host => {
    const found = hosts.get(name);
    if (found === undefined) throw new Error(`no host '${name}'`);
    return found;
  };
  return {
    hosts,
    host,
    cut: async (name) => { await ip('link', 'set', host(name).link, 'down'); },
    heal: async (name) => { await ip('link', 'set', host(name).link, 'up'); },
    client(name) {
      const client = new NetnsClient(host(name));
      clients.push(client);
      return client;
    },
    destroy,
  };
}

export interface NetnsResponse { readonly status: number; readonly body: string }

/** Requests made from inside a host's namespace by a small agent process living there. */
export class NetnsClient {
  readonly #agent: ChildProcess;
  readonly #waiting = new Map<number, { resolve: (r: NetnsResponse) => void; reject: (e: Error) => void }>();
  #next = 0;

  constructor(host: Host) {
    const agent = new URL('./netns-agent.mjs', import.meta.url).pathname;
    const [command, ...args] = host.wrap([process.execPath, agent]);
    this.#agent = spawn(command as string, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.#agent.stdout! }).on('line', (line) => {
      const answer = JSON.parse(line) as { id: number; status?: number; body?: string; error?: string };
      const waiter = this.#waiting.get(answer.id);
      this.#waiting.delete(answer.id);
      if (answer.error !== undefined) waiter?.reject(new Error(answer.error));
      else waiter?.resolve({ status: answer.status ?? 0, body: answer.body ?? '' });
    });
    this.#agent.once('exit', () => {
      for (const waiter of this.#waiting.values()) waiter.reject(new Error('the namespace agent exited'));
      this.#waiting.clear();
    });
  }

  request(url: string, init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<NetnsResponse> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#agent.stdin?.write(`${JSON.stringify({ id, url, ...init })}\n`);
    });
  }

  async json<T>(url: string, init?: Parameters<NetnsClient['request']>[1]): Promise<T> {
    const res = await this.request(url, init);
    return JSON.parse(res.body) as T;
  }

  close(): void {
    this.#agent.kill('SIGKILL');
  }
}
