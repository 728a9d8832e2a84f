import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { BatonError } from '../../core/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Exec } from './exec.ts';

/**
 * A network namespace ready for one container: a veth to the worker's bridge and an address; no
 * route out (`none`), or a default route through the bridge and the host's masquerading (`egress`).
 */
export interface NetworkSlot {
  readonly name: string;
  /** `/var/run/netns/<name>`, what the container's config joins. */
  readonly path: string;
  readonly address: string;
  readonly index: number;
  readonly mode: NetworkMode;
}

/** A function's `network`: `none` (only the data plane reaches it) or `egress` (it may also open connections beyond the host). */
export type NetworkMode = 'none' | 'egress';

export interface NetworkPoolOptions {
  /** Short per-worker tag in every name (bridge `bt<tag>`, namespaces `baton-<tag>-…`, nft table `baton_<tag>`). */
  readonly tag: string;
  /** The worker-local IPv4 /24 (or larger) its sandboxes get addresses from, e.g. `10.213.0.0/24`; `.1` is the bridge's. */
  readonly subnet: string;
  /** Namespaces kept ready (of each mode in use: `egress` ones only once an egress sandbox was asked for). */
  readonly size: number;
  /**
   * Whether `egress` sandboxes are offered: their connections out are forwarded and masqueraded
   * behind the host's address, which needs IPv4 forwarding on (the pool turns it on, as a container
   * engine does). Off: `take('egress')` is refused with a coded error.
   */
  readonly egress: boolean;
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
 *
 * An `egress` namespace also has a default route through the bridge, and its address is in the
 * table's `egress` set: the forward chain lets what it opens out (and the answers back), and the
 * postrouting chain masquerades it behind the host's address on the way out. It still cannot open
 * anything to the host itself (the input chain drops it) nor to another sandbox (isolated ports;
 * another worker's table drops what goes into its bridge). The two kinds are pooled apart, so
 * neither costs a command on the cold-start path once its pool is warm.
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
  readonly #idle: Record<NetworkMode, NetworkSlot[]> = { none: [], egress: [] };
  /** Whether an egress sandbox was asked for: only then is an egress pool kept. */
  #egressWanted = false;
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

  /** Namespaces ready to be taken, of both modes. */
  get readyCount(): number {
    return this.#idle.none.length + this.#idle.egress.length;
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
    if (this.#o.egress) await enableForwarding(this.#o.logger);
    const br = this.#bridge;
    await this.#o.exec('nft', ['-f', '-'], {
      input: `table inet baton_${this.#o.tag} {
  set egress {
    type ipv4_addr
  }
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "${br}" ct state established,related accept
    iifname "${br}" drop
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "${br}" ip saddr @egress accept
    oifname "${br}" ct state established,related ip daddr @egress accept
    iifname "${br}" drop
    oifname "${br}" drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr @egress oifname != "${br}" masquerade
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
  async take(mode: NetworkMode = 'none'): Promise<NetworkSlot> {
    if (this.#isClosed) throw new BatonError('ERR_SHUTTING_DOWN', 'the network pool is closed');
    if (mode === 'egress') {
      if (!this.#o.egress) throw new BatonError('ERR_RUNTIME_UNAVAILABLE', 'network "egress" is not offered by this worker (containerEgress is off)');
      this.#egressWanted = true;
    }
    return this.#idle[mode].shift() ?? await this.#create(mode);
  }

  /** Tops the pool up in the background. */
  refill(): void {
    if (this.#filling !== undefined || this.#isClosed || !this.#isShort()) return;
    this.#filling = this.#fill()
      .catch((err: unknown) => this.#o.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'refilling the network pool failed'))
      .finally(() => { this.#filling = undefined; });
  }

  /**
   * Gives a namespace back once its container is gone: to the pool, or destroyed when the pool is
   * full. The promise (which callers need not wait for) settles once it is one or the other.
   */
  release(slot: NetworkSlot): Promise<void> {
    const idle = this.#idle[slot.mode];
    if (this.#isClosed || idle.length >= this.#o.size) return this.#destroy(slot);
    idle.push(slot);
    return Promise.resolve();
  }

  /** Removes every namespace of the pool, the bridge and the table. In-use namespaces must have been released. */
  async close(): Promise<void> {
    this.#isClosed = true;
    await this.#filling;
    const idle = [...this.#idle.none.splice(0), ...this.#idle.egress.splice(0)];
    await Promise.all(idle.map((slot) => this.#destroy(slot)));
    await this.cleanupLeftovers();
  }

  #isShort(): boolean {
    return this.#idle.none.length < this.#o.size || (this.#egressWanted && this.#idle.egress.length < this.#o.size);
  }

  async #fill(): Promise<void> {
    while (!this.#isClosed && this.#isShort() && this.#used.size < this.#maxIndex - 1) {
      const mode: NetworkMode = this.#idle.none.length < this.#o.size ? 'none' : 'egress';
      this.#idle[mode].push(await this.#create(mode));
    }
  }

  async #create(mode: NetworkMode = 'none'): Promise<NetworkSlot> {
    const index = this.#nextIndex();
    this.#used.add(index);
    const name = `baton-${this.#o.tag}-${this.#runId}-${index}`;
    const hostVeth = `bv${this.#o.tag}${index}`;
    const address = formatIp(this.#base + index);
    try {
      await this.#o.exec('ip', ['netns', 'add', name]);
      await this.#o.exec('ip', ['-batch', '-'], {
        input: [
          // The MAC follows from the address: one given again keeps its MAC, so the host's neighbour
          // entry for it (reachable for up to ~45 s after the last sandbox there) stays right. With
          // a random MAC, connections to a reused address went to the old one and hung for seconds.
          `link add ${hostVeth} type veth peer name eth0 address ${macOf(this.#base + index)} netns ${name}`,
          `link set dev ${hostVeth} master ${this.#bridge}`,
          `link set dev ${hostVeth} type bridge_slave isolated on`,
          `link set dev ${hostVeth} up`,
        ].join('\n') + '\n',
      });
      await this.#o.exec('ip', ['-n', name, '-batch', '-'], {
        input: [
          `addr add ${address}/${this.#prefix} dev eth0`, 'link set eth0 up', 'link set lo up',
          ...(mode === 'egress' ? [`route add default via ${this.#bridgeAddress} dev eth0`] : []),
        ].join('\n') + '\n',
      });
      if (mode === 'egress') await this.#o.exec('nft', ['add', 'element', 'inet', `baton_${this.#o.tag}`, 'egress', `{ ${address} }`]);
    } catch (err) {
      await this.#o.exec('ip', ['netns', 'delete', name]).catch(() => undefined);
      this.#used.delete(index);
      throw err;
    }
    return { name, path: `${NETNS_DIR}/${name}`, address, index, mode };
  }

  async #destroy(slot: NetworkSlot): Promise<void> {
    if (slot.mode === 'egress') {
      // Out of the set before its address can be given to a `none` namespace.
      await this.#o.exec('nft', ['delete', 'element', 'inet', `baton_${this.#o.tag}`, 'egress', `{ ${slot.address} }`]).catch(() => undefined);
    }
    await this.#o.exec('ip', ['netns', 'delete', slot.name]).catch(() => undefined);
    this.#used.delete(slot.index);
  }

  #nextIndex(): number {
    for (let i = 2; i <= this.#maxIndex; i++) if (!this.#used.has(i)) return i;
    throw new BatonError('ERR_NO_CAPACITY', `no address left in ${this.#o.subnet} for another sandbox`);
  }
}

/** A locally administered unicast MAC for an IPv4 address: `02:ba:` and the address's four bytes. */
export function macOf(ip: number): string {
  const bytes = [0x02, 0xba, (ip >>> 24) & 0xff, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

/** Turns IPv4 forwarding on (egress sandboxes' connections are routed through the host), saying so when it was off. */
async function enableForwarding(logger: Logger): Promise<void> {
  const current = (await readFile(IP_FORWARD, 'utf8').catch(() => '')).trim();
  if (current === '1') return;
  await writeFile(IP_FORWARD, '1\n').catch((err: unknown) => {
    throw new BatonError('ERR_RUNTIME_UNAVAILABLE', `network "egress" needs IPv4 forwarding and turning it on failed (${err instanceof Error ? err.message : String(err)}); run 'sysctl -w net.ipv4.ip_forward=1' or set containerEgress: false`);
  });
  logger.info({ sysctl: 'net.ipv4.ip_forward' }, 'turned IPv4 forwarding on for egress sandboxes (their connections out are masqueraded behind the host)');
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
