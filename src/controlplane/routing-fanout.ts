import type { RoutingChange, RoutingEndpoint, RoutingFunction, RoutingSnapshot } from '../api/dataplane.ts';
import type { RoutingToken } from '../api/tokens.ts';
import { toRoutingEndpoint, toRoutingFunction, type FunctionEntry } from './model.ts';
import type { RoutingPublisher } from './routing-publisher.ts';
import type { SandboxReader } from './sandbox-table.ts';

/** What the fan-out reads: the registered functions, and the publishers of the connected data planes. */
export interface RoutingSources {
  readonly functions: { values(): Iterable<FunctionEntry> };
  readonly sandboxes: SandboxReader;
  /** The live tokens that may invoke (absent: none are sent). */
  readonly tokens?: { routingTokens(): RoutingToken[] };
  /** The connected data planes' channels. */
  channels(): readonly { readonly publisher: RoutingPublisher }[];
}

/**
 * The routing view every data plane holds, and the changes to it: a change is handed to every
 * connected data plane's publisher (which batches and versions it); a data plane that (re)connects
 * gets `snapshot()`. The registry publishes functions, the plan executor endpoints, the token
 * registry the tokens that may invoke; nothing else.
 */
export class RoutingFanout {
  readonly #sources: RoutingSources;

  constructor(sources: RoutingSources) {
    this.#sources = sources;
  }

  publish(change: RoutingChange): void {
    for (const channel of this.#sources.channels()) channel.publisher.enqueue(change);
  }

  /** Resolves when every data plane has acknowledged every change published so far (never rejects). */
  async flushed(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const channel of this.#sources.channels()) waits.push(channel.publisher.flushed());
    await Promise.all(waits);
  }

  /** The full view: every function not being deleted, its ready and draining endpoints, and the tokens that may invoke. */
  snapshot(): RoutingSnapshot {
    const functions: RoutingFunction[] = [];
    const endpoints: RoutingEndpoint[] = [];
    for (const fn of this.#sources.functions.values()) {
      if (fn.isDeleting) continue;
      functions.push(toRoutingFunction(fn));
      for (const sandbox of fn.sandboxes.values()) {
        if (sandbox.phase !== 'starting' && sandbox.address !== undefined) endpoints.push(toRoutingEndpoint(sandbox));
      }
    }
    const tokens = this.#sources.tokens?.routingTokens() ?? [];
    return tokens.length === 0 ? { functions, endpoints } : { functions, endpoints, tokens };
  }
}
