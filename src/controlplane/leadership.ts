import type { IncomingMessage, ServerResponse } from 'node:http';
import { BatonError } from '../core/errors.ts';
import type { MetricsRegistry } from '../observability/metrics.ts';
import { sendJson } from '../transport/json-router.ts';
import type { RpcReply } from '../transport/rpc-server.ts';
import type { Routes } from './recovery-gate.ts';

/** What a control plane that does not lead knows of the election. */
export interface FollowerView {
  /** This control plane's advertised URL. */
  readonly selfUrl: string;
  /** The leader as last read from the lease in the store, or undefined when none holds it. */
  leaderUrl(): string | undefined;
  /** Elected, and loading the cluster's state before it acts. */
  isTakingOver(): boolean;
  isClosing(): boolean;
  readonly metrics: MetricsRegistry;
}

/**
 * How a control plane answers while it does not lead (only the leader acts — see
 * docs/architecture.md, "Several control planes"):
 *   GET /healthz          200 { status: 'ok', role: 'follower' | 'taking-over', leaderUrl }
 *   GET /metrics          its own process metrics
 *   /internal/…           503 ERR_NOT_LEADER { leaderUrl } — workers and data planes follow it
 *   anything else (HTTP)  307 to the same path on the leader — management calls (`baton` CLI,
 *                         the REST API) are redirected with their method and body
 * with no leader elected (or while this one takes over): 503 ERR_NOT_LEADER / ERR_UNAVAILABLE,
 * both retryable. Over the RPC stream every call is internal.
 */
export function followerRoutes(view: FollowerView): Routes {
  const refusal = (path: string): BatonError => {
    if (view.isClosing()) return new BatonError('ERR_SHUTTING_DOWN', 'the control plane is shutting down');
    if (view.isTakingOver()) return new BatonError('ERR_UNAVAILABLE', 'this control plane was just elected leader and is loading the cluster\'s state', { details: { leaderUrl: view.selfUrl } });
    const leaderUrl = otherLeader(view);
    return new BatonError('ERR_NOT_LEADER', leaderUrl === undefined
      ? `no control plane leads yet (${path} needs the leader)`
      : `this control plane follows ${leaderUrl}; ${path} goes to the leader`, { details: leaderUrl === undefined ? {} : { leaderUrl } });
  };
  return {
    handle(req: IncomingMessage, res: ServerResponse) {
      const path = req.url ?? '/';
      const pathname = path.split('?')[0] ?? '/';
      if (req.method === 'GET' && pathname === '/healthz') {
        req.resume();
        const role = view.isTakingOver() ? 'taking-over' : 'follower';
        sendJson(res, view.isClosing() ? 503 : 200, { status: view.isClosing() ? 'closing' : 'ok', role, leaderUrl: view.isTakingOver() ? view.selfUrl : view.leaderUrl() ?? null });
        return;
      }
      if (req.method === 'GET' && pathname === '/metrics') {
        req.resume();
        void view.metrics.metrics().then((text) => {
          res.writeHead(200, { 'content-type': view.metrics.contentType, 'content-length': Buffer.byteLength(text) });
          res.end(text);
        });
        return;
      }
      const leaderUrl = otherLeader(view);
      req.resume();
      res.shouldKeepAlive = false;
      if (!pathname.startsWith('/internal/') && leaderUrl !== undefined && !view.isClosing() && !view.isTakingOver()) {
        res.writeHead(307, { location: `${leaderUrl}${path}`, 'content-length': 0 });
        res.end();
        return;
      }
      const err = refusal(pathname);
      sendJson(res, err.status, err.toBody());
    },
    dispatch(_method: string, path: string): Promise<RpcReply> {
      const err = refusal(path.split('?')[0] ?? path);
      return Promise.resolve({ status: err.status, body: err.toBody() });
    },
  };
}

/**
 * The leader's routes, with `/healthz` saying that it leads and in which epoch (the other calls go
 * to `routes` unchanged).
 */
export function leaderRoutes(routes: Routes, o: { selfUrl: string; epoch: number; isClosing: () => boolean }): Routes {
  return {
    handle(req, res) {
      if (req.method === 'GET' && req.url === '/healthz' && !o.isClosing()) {
        req.resume();
        sendJson(res, 200, { status: 'ok', role: 'leader', leaderUrl: o.selfUrl, epoch: o.epoch });
        return;
      }
      routes.handle(req, res);
    },
    dispatch: routes.dispatch,
  };
}

/** The leader's URL when it is another control plane (a lease still held in this URL's name by an earlier run of this one does not count). */
function otherLeader(view: FollowerView): string | undefined {
  const url = view.leaderUrl();
  return url === undefined || url === view.selfUrl ? undefined : url;
}
