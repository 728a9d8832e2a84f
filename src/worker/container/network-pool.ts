import { randomBytes } from 'node:crypto';
import { BatonError } from '../../core/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Exec } from './exec.ts';

/** A network namespace ready for one container: a veth to the worker's bridge, an address, no route out. */
export interface NetworkSlot {
  readonly name: string;
  /** `/var/run/netns/<name>`, what the container's config joins. */
  readonly path: string;
  readonly address: string;
  readonly index: number;
}

export interface NetworkPoolOptions {
  /** Short per-worker tag in every name (bridge `bt<tag>`, namespaces `baton-<tag>-…`, nft table `baton_<tag>`). */
  readonly tag: string;
  /** The worker-local IPv4 /24 (or larger) its sandboxes get addresses from, e.g. `10.213.0.0/24`; `.1` is the bridge's. */
  readonly subnet: string;
  /** Namespaces kept ready. */
  readonly size: number;
  readonly exec: Exec;
  readonly logger: Logger;
}

const NETNS_DIR = '/var/run/netns';

/**
 * Network namespaces made ahead of time (making one — namespace, veth pair, address — is ~30 ms
 * of `ip` commands, too much for a cold start; taking one from the pool is nothing). Each has a
 * veth whose host end is an *isolated* port of the worker's bridge (sandboxes cannot reach each
 * other), an address from the worker's subnet, loopback up, and no default route. An nft table
 * drops whatever a sandbox starts towards the host (input) or beyond it (forward), so only
 * connections opened *to* a sandbox — the data plane's — pass. A namespace whose container is
 * gone goes back to the pool (its processes died with the container's pid namespace).
 */
export class NetworkPool {
  readonly #o: NetworkPoolOptions;
  readonly #bridge: string;
  readonly #bridgeAddress: string;
  readonly #prefix: number;
  readonly #base: number;
  readonly #maxIndex: number;
  /** Unique per run: a namespace of an earlier run is never mistaken for one of the pool. */
  readonly #runId = randomBytes(2).toString('hex');
  readonly #idle: NetworkSlot[] = [];
  readonly #used = new Set<number>();
  #filling: Promise<void> | undefined;
  #isClosed = false;

  constructor(options: NetworkPoolOptions) {
    this.#o = options;
    const { base, prefix } = parseSubnet(options.subnet);
    this.#base = base;
    this.#prefix = prefix;
    this.#maxIndex = Math.min(2 ** (32 - prefix) - 2, 4094);
    this.#bridge = `bt${options.tag}`;
    this.#bridgeAddress = formatIp(base + 1);
  }

  get bridge(): string {
    return this.#bridge;
  }

  /** Namespace names of this worker's tag (this run's and earlier ones'). */
  async listNamespaces(): Promise<string[]> {
    const text = await this.#o.exec('ip', ['netns', 'list']).catch(() => '');
    return text.split('\n').map((line) => line.split(' ')[0] ?? '').filter((name) => name.startsWith(`baton-${this.#o.tag}-`));
  }

  /** Removes what an earlier run of this worker left (namespaces and their veths, bridge, nft table); returns the namespaces removed. */
  async cleanupLeftovers(): Promise<number> {
    const names = await this.listNamespaces();
    // Listed again after each round: an `ip` command of a killed run may still have been adding one.
    let remaining = names;
    for (let round = 0; round < 3 && remaining.length > 0; round++) {
      for (const name of remaining) {
        await this.#o.exec('ip', ['netns', 'delete', name]).catch((err: unknown) => {
          this.#o.logger.warn({ netns: name, err: err instanceof Error ? err.message : String(err) }, 'removing a network namespace failed');
        });
      }
      remaining = await this.listNamespaces();
    }
    // A namespace outlives its deletion while a process of a container just killed still holds it,
    // and its veth with it: the host ends are deleted by name (which deletes each pair), or making
    // the pool again would find a `bv<tag><index>` that exists.
    for (const veth of await this.#listHostVeths()) {
      await this.#o.exec('ip', ['link', 'delete', veth]).catch(() => undefined);
    }
    await this.#o.exec('ip', ['link', 'delete', this.#bridge]).catch(() => undefined);
    await this.#o.exec('nft', ['delete', 'table', 'inet', `baton_${this.#o.tag}`]).catch(() => undefined);
    return names.length;
  }

  /** Host ends of this worker's veths (`bv<tag><index>`), of this run and earlier ones. */
  async #listHostVeths(): Promise<string[]> {
    const text = await this.#o.exec('ip', ['-o', 'link', 'show']).catch(() => '');
    const prefix = `bv${this.#o.tag}`;
    return text.split('\n')
      .map((line) => (line.split(': ')[1] ?? '').split('@')[0] ?? '')
      .filter((name) => name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)));
  }

  /** Makes the bridge and the firewall table, then fills the pool. */
  async start(): Promise<void> {
    await this.#o.exec('ip', ['-batch', '-'], {
      input: [
        `link add ${this.#bridge} type bridge`,
        `addr add ${this.#bridgeAddress}/${this.#prefix} dev ${this.#bridge}`,
        `link set ${this.#bridge} up`,
      ].join('\n') + '\n',
    });
    const br = this.#bridge;
    await this.#o.exec('nft', ['-f', '-'], {
      input: `table inet baton_${this.#o.tag} {
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "${br}" ct state established,related accept
    iifname "${br}" drop
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "${br}" drop
    oifname "${br}" drop
  }
}
`,
    });
    await this.#fill();
  }

  /**
   * A ready namespace (made now when the pool is empty). The caller calls `refill` once its start
   * is over: refilling spawns `ip`, and a spawn blocks the event loop for a few ms.
   */
  async take(): Promise<NetworkSlot> {
    if (this.#isClosed) throw new BatonError('ERR_SHUTTING_DOWN', 'the network pool is closed');
    return this.#idle.shift() ?? await this.#create();
  }

  /** Tops the pool up in the background. */
  refill(): void {
    if (this.#filling !== undefined || this.#isClosed || this.#idle.length >= this.#o.size) return;
    this.#filling = this.#fill()
      .catch((err: unknown) => this.#o.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'refilling the network pool failed'))
      .finally(() => { this.#filling = undefined; });
  }

  /** Gives a namespace back once its container is gone. */
  release(slot: NetworkSlot): void {
    if (this.#isClosed || this.#idle.length >= this.#o.size) {
      void this.#destroy(slot);
      return;
    }
    this.#idle.push(slot);
  }

  /** Removes every namespace of the pool, the bridge and the table. In-use namespaces must have been released. */
  async close(): Promise<void> {
    this.#isClosed = true;
    await this.#filling;
    await Promise.all(this.#idle.splice(0).map((slot) => this.#destroy(slot)));
    await this.cleanupLeftovers();
  }

  async #fill(): Promise<void> {
    while (!this.#isClosed && this.#idle.length < this.#o.size && this.#used.size < this.#maxIndex - 1) {
      this.#idle.push(await this.#create());
    }
  }

  async #create(): Promise<NetworkSlot> {
    const index = this.#nextIndex();
    this.#used.add(index);
    const name = `baton-${this.#o.tag}-${this.#runId}-${index}`;
    const hostVeth = `bv${this.#o.tag}${index}`;
    const address = formatIp(this.#base + index);
    try {
      await this.#o.exec('ip', ['netns', 'add', name]);
      await this.#o.exec('ip', ['-batch', '-'], {
        input: [
          `link add ${hostVeth} type veth peer name eth0 netns ${name}`,
          `link set dev ${hostVeth} master ${this.#bridge}`,
          `link set dev ${hostVeth} type bridge_slave isolated on`,
          `link set dev ${hostVeth} up`,
        ].join('\n') + '\n',
      });
      await this.#o.exec('ip', ['-n', name, '-batch', '-'], {
        input: [`addr add ${address}/${this.#prefix} dev eth0`, 'link set eth0 up', 'link set lo up'].join('\n') + '\n',
      });
    } catch (err) {
      await this.#o.exec('ip', ['netns', 'delete', name]).catch(() => undefined);
      this.#used.delete(index);
      throw err;
    }
    return { name, path: `${NETNS_DIR}/${name}`, address, index };
  }

  async #destroy(slot: NetworkSlot): Promise<void> {
    await this.#o.exec('ip', ['netns', 'delete', slot.name]).catch(() => undefined);
    this.#used.delete(slot.index);
  }

  #nextIndex(): number {
    for (let i = 2; i <= this.#maxIndex; i++) if (!this.#used.has(i)) return i;
    throw new BatonError('ERR_NO_CAPACITY', `no address left in ${this.#o.subnet} for another sandbox`);
  }
}

/** `10.213.0.0/24` → base address as a number and the prefix length (8–30). */
export function parseSubnet(subnet: string): { base: number; prefix: number } {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(subnet);
  const octets = match === null ? [] : match.slice(1, 5).map(Number);
  const prefix = match === null ? 0 : Number(match[5]);
  if (match === null || octets.some((o) => o > 255) || prefix < 8 || prefix > 30) {
    throw new BatonError('ERR_INVALID_CONFIG', `containerSubnet must be an IPv4 network like 10.213.0.0/24 (prefix 8 to 30), got '${subnet}'`);
  }
  const value = octets.reduce((acc, o) => acc * 256 + o, 0);
  const size = 2 ** (32 - prefix);
  return { base: value - (value % size), prefix };
}

function formatIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}
