import { createServer } from 'node:http';
import { serveCleartextHttp2 } from '/work/wt-15/src/transport/h2c.ts';
const mode = process.argv[2];
const server = createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('hello'); });
if (mode === 'sniff') serveCleartextHttp2(server, () => undefined, { limits: { maxHeaderBytes: 16384, maxHeaderCount: 100 }, maxConcurrentStreams: 100, idleTimeoutMs: 60000, firstBytesTimeoutMs: 60000 });
server.on('connection', (s) => setTimeout(() => { if (mode) console.error('consumed', (s as any)._handle?._consumed); }, 100));
server.listen(Number(process.argv[3]), '127.0.0.1', () => console.log('ready'));
