import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import { Server as TlsServer } from 'node:tls';

/**
 * Starts `server` listening on `host:port` (port 0: a free one) and resolves with the port it got
 * and its base URL (`http://host:port`, `https://` for a TLS server, an IPv6 host in brackets); rejects with the listen error
 * (EADDRINUSE, EACCES) instead of leaving it to the server's 'error' event.
 */
export async function listen(server: Server, address: { readonly host: string; readonly port: number }): Promise<{ port: number; url: string }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return { port, url: httpUrl(address.host, port, server instanceof TlsServer) };
}

/** `http://host:port` (`https://` with `isTls`), with an IPv6 host in brackets. */
export function httpUrl(host: string, port: number, isTls = false): string {
  return `${isTls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * Stops accepting and resolves once the server is closed (at once if it never listened). Open
 * connections are waited for, or with `isClosingConnections` closed at once.
 */
export function closeServer(server: Server | HttpServer, options: { readonly isClosingConnections?: boolean } = {}): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    if (options.isClosingConnections === true && 'closeAllConnections' in server) server.closeAllConnections();
  });
}
