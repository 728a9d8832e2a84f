import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { functionSpecSchema, type FunctionRecord } from '../../src/api/function-spec.ts';
import { parseOrThrow } from '../../src/api/validate.ts';
import { BatonError } from '../../src/core/errors.ts';
import { JsonRouter, reply, sendJson } from '../../src/transport/json-router.ts';

/**
 * An in-memory control plane speaking the management REST API (`/v1/...`), for CLI tests. It
 * records every request, validates specs with the real schema and keeps artifacts by digest.
 * Sandboxes, logs, workers and data planes are whatever the test puts in.
 */

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  bodyBytes: number;
}

export interface FakeSandbox {
  sandboxId: string; workerId: string; generation: number; state: 'starting' | 'ready' | 'draining';
  address?: string; createdAt: string; readyAt?: string;
  breakdown?: FakeBreakdown;
}

export interface FakeBreakdown { fetchMs: number; startMs: number; readyMs: number; totalMs: number; controlPlaneMs?: number }

export interface FakeColdStart { sandboxId: string; workerId: string; at: string; breakdown: FakeBreakdown }

export interface FakeLogLine { ts: string | number; sandboxId: string; stream: 'stdout' | 'stderr'; line: string }

export class FakeControlPlane {
  readonly requests: RecordedRequest[] = [];
  readonly artifacts = new Map<string, Buffer>();
  readonly functions = new Map<string, FunctionRecord>();
  readonly status = new Map<string, { desired: number; ready: number; starting: number; draining: number }>();
  readonly sandboxes = new Map<string, FakeSandbox[]>();
  readonly coldStarts = new Map<string, FakeColdStart[]>();
  readonly logs = new Map<string, FakeLogLine[]>();
  workers: unknown[] = [];
  dataplanes: unknown[] = [];
  /** Called on every logs request (after it is recorded), e.g. to add lines for a follower. */
  onLogsRequest: ((name: string, count: number) => void) | undefined;
  #logsRequests = 0;
  #server: Server | undefined;
  #clock = 0;

  get url(): string {
    const address = this.#server?.address() as AddressInfo | null | undefined;
    if (address === undefined || address === null) throw new Error('not listening');
    return `http://127.0.0.1:${address.port}`;
  }

  async listen(): Promise<void> {
    const router = this.#routes();
    this.#server = createServer((req, res) => {
      const recorded = { method: req.method ?? 'GET', path: req.url ?? '/', contentType: req.headers['content-type'], bodyBytes: 0 };
      this.requests.push(recorded);
      // The router reads the body itself; count the bytes as they pass.
      req.on('data', (c: Buffer) => { recorded.bodyBytes += c.length; });
      router.handle(req, res);
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #now(): string {
    return new Date(Date.UTC(2025, 0, 1, 0, 0, this.#clock++)).toISOString();
  }

  #get(name: string): FunctionRecord {
    const record = this.functions.get(name);
    if (record === undefined) throw new BatonError('ERR_FUNCTION_NOT_FOUND', `function '${name}' does not exist`);
    return record;
  }

  #validate(body: unknown) {
    const spec = parseOrThrow(functionSpecSchema, body, 'ERR_INVALID_SPEC', 'function spec');
    if (spec.runtime === 'process' && spec.artifact !== undefined && !this.artifacts.has(spec.artifact)) throw new BatonError('ERR_ARTIFACT_NOT_FOUND', `no artifact ${spec.artifact}`);
    return spec;
  }

  #routes(): JsonRouter {
    return new JsonRouter()
      .on('PUT', '/v1/artifacts', async (ctx) => {
        const data = await ctx.body();
        const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
        this.artifacts.set(digest, data);
        return reply(201, { digest });
      })
      .on('POST', '/v1/functions', async (ctx) => {
        const spec = this.#validate(await ctx.json());
        if (this.functions.has(spec.name)) throw new BatonError('ERR_FUNCTION_EXISTS', `function '${spec.name}' exists`);
        const at = this.#now();
        const record: FunctionRecord = { spec, generation: 1, createdAt: at, updatedAt: at };
        this.functions.set(spec.name, record);
        return reply(201, record);
      })
      .on('GET', '/v1/functions', () => ({ functions: [...this.functions.values()] }))
      .on('GET', '/v1/functions/:name', (ctx) => {
        const name = ctx.params['name'] as string;
        const status = this.status.get(name) ?? { desired: 0, ready: 0, starting: 0, draining: 0 };
        return { ...this.#get(name), status, recentColdStarts: this.coldStarts.get(name) ?? [] };
      })
      .on('PUT', '/v1/functions/:name', async (ctx) => {
        const name = ctx.params['name'] as string;
        const previous = this.#get(name);
        const spec = this.#validate(await ctx.json());
        if (spec.name !== name) throw new BatonError('ERR_INVALID_SPEC', 'name in body differs from the path');
        const record: FunctionRecord = { spec, generation: previous.generation + 1, createdAt: previous.createdAt, updatedAt: this.#now() };
        this.functions.set(name, record);
        return record;
      })
      .on('DELETE', '/v1/functions/:name', (ctx) => {
        const name = ctx.params['name'] as string;
        this.#get(name);
        this.functions.delete(name);
        return { deleted: name };
      })
      .on('GET', '/v1/functions/:name/sandboxes', (ctx) => {
        const name = ctx.params['name'] as string;
        this.#get(name);
        return { sandboxes: this.sandboxes.get(name) ?? [] };
      })
      .on('GET', '/v1/functions/:name/logs', (ctx) => {
        const name = ctx.params['name'] as string;
        this.#get(name);
        this.onLogsRequest?.(name, ++this.#logsRequests);
        const tail = Number(ctx.query.get('tail') ?? 100);
        const lines = this.logs.get(name) ?? [];
        return { lines: tail === 0 ? [] : lines.slice(-tail) };
      })
      .on('GET', '/v1/workers', () => ({ workers: this.workers }))
      .on('GET', '/v1/dataplanes', () => ({ dataplanes: this.dataplanes }));
  }
}

/**
 * A data plane that echoes each invocation as JSON `{fn, method, path, headers, body}`; function
 * `missing` answers the data plane's 404 error, and function `teapot` answers 418 in plain text.
 */
export async function startEchoDataplane(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const match = /^\/fn\/([^/]+)(\/.*)?$/.exec(req.url ?? '');
      const fn = match?.[1];
      if (fn === undefined || fn === 'missing') {
        sendJson(res, 404, new BatonError('ERR_FUNCTION_NOT_FOUND', `function '${fn ?? ''}' does not exist`).toBody());
        return;
      }
      if (fn === 'teapot') {
        res.writeHead(418, { 'content-type': 'text/plain' }).end('short and stout\n');
        return;
      }
      sendJson(res, 200, {
        fn, method: req.method, path: match?.[2] ?? '/', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'),
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
