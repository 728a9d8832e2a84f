// The trace function of Invitro and Dirigent, for every Baton runtime: one port ($PORT) serving
// HTTP/1.1, HTTP/2 cleartext (prior knowledge) and gRPC (`/faas.Executor/Execute`, and the server
// stream `/faas.Streamer/ExecuteStream`). Each
// invocation spins the CPU for the requested milliseconds and touches the requested memory, then
// answers with the measured execution time in µs. No dependencies: the folder runs as it is.
//
// Inputs (README.md): HTTP headers `requested_cpu` (ms; Invitro's name), `x-baton-exec-ms` (ms),
// `requested_memory` (MiB), `workload` ("empty" or containing it: answer at once), `function`,
// `multiplier`; gRPC FaasRequest{message, runtimeInMilliSec, memoryInMebiBytes}.
import { createServer as createHttp1Server } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import { createServer as createNetServer } from 'node:net';
import { hostname } from 'node:os';

const MACHINE = hostname();
const MAX_RUNTIME_MS = 60_000;
/** Memory touched per invocation at most (MiB); `TRACE_FUNCTION_MAX_MEMORY_MIB` overrides. */
const MAX_MEMORY_MIB = Number(process.env.TRACE_FUNCTION_MAX_MEMORY_MIB ?? 512);
const PAGE = 4096;

// ---- CPU: a calibrated loop (as Invitro's), then spinning on the clock up to the requested time.

let sink = 0;
/** `count` iterations of a floating-point loop the optimiser cannot remove. */
function work(count) {
  let x = sink + 1.0001;
  for (let i = 0; i < count; i++) x = Math.sqrt(x + i);
  sink = x % 1;
}

/** Loop iterations per millisecond on this machine, measured over ~60 ms at start. */
function calibrate() {
  const chunk = 20_000;
  let iterations = 0;
  const start = performance.now();
  while (performance.now() - start < 60) {
    work(chunk);
    iterations += chunk;
  }
  return iterations / (performance.now() - start);
}

const ITERATIONS_PER_MS = calibrate();

/**
 * Busy for `ms` since `startedAt` (the time already spent on the request counts, as in Invitro):
 * the calibrated loop for 90 % of what is left, then short chunks until the clock says `ms` have
 * passed — so the measured time is never below the request even when the machine is slower than
 * at calibration.
 */
function spin(ms, startedAt) {
  const left = ms - (performance.now() - startedAt);
  if (left > 0) work(Math.floor(left * 0.9 * ITERATIONS_PER_MS));
  const chunk = Math.max(1, Math.floor(ITERATIONS_PER_MS / 10));
  while (performance.now() - startedAt < ms) work(chunk);
}

/** Allocates `mib` MiB and writes one byte per page, so that the memory is really committed. */
function touch(mib) {
  const size = Math.min(MAX_MEMORY_MIB, Math.max(0, mib)) * 1024 * 1024;
  if (size === 0) return 0;
  const buffer = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += PAGE) buffer[i] = 1;
  return size / 1024;
}

const clampMs = (value) => (Number.isFinite(value) && value > 0 ? Math.min(MAX_RUNTIME_MS, Math.floor(value)) : 0);

/** Runs one invocation; `durationUs` is the measured wall time from `startedAt`. */
function execute({ runtimeMs, memoryMiB, isEmpty }, startedAt) {
  if (isEmpty) return { durationUs: 0, memoryKb: 0 };
  const memoryKb = touch(memoryMiB);
  spin(runtimeMs, startedAt);
  return { durationUs: Math.round((performance.now() - startedAt) * 1000), memoryKb };
}

// ---- HTTP/1.1 and h2c: Dirigent's HTTP workload.

function headerOf(req, name) {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function onHttpRequest(req, res) {
  const startedAt = performance.now();
  if (headerOf(req, 'content-type')?.startsWith('application/grpc')) return onGrpcRequest(req, res, startedAt);
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
    return;
  }
  req.resume();
  req.on('end', () => {
    const workload = headerOf(req, 'workload') ?? 'trace';
    const fn = headerOf(req, 'function') ?? process.env.BATON_FUNCTION ?? '';
    const request = {
      runtimeMs: clampMs(Number(headerOf(req, 'requested_cpu') ?? headerOf(req, 'x-baton-exec-ms') ?? 0)),
      memoryMiB: Number(headerOf(req, 'requested_memory') ?? 0) || 0,
      isEmpty: workload.toLowerCase().includes('empty'),
    };
    const { durationUs } = execute(request, startedAt);
    const body = JSON.stringify({ Status: request.isEmpty ? 'OK - EMPTY' : 'OK', Function: fn, MachineName: MACHINE, ExecutionTime: durationUs });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
}

// ---- gRPC: Invitro's faas.Executor/Execute, unary. Messages are length-prefixed protobuf.

/** Reads a varint at `at`; returns [value, next offset]. */
function readVarint(buf, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    if (at >= buf.length) throw new Error('truncated varint');
    const byte = buf[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, at];
    shift += 7;
    if (shift > 63) throw new Error('varint too long');
  }
}

/** FaasRequest from its protobuf bytes (unknown fields skipped). */
function decodeFaasRequest(buf) {
  const fields = decodeFields(buf);
  return { message: fields.strings[1] ?? '', runtimeInMilliSec: fields.ints[2] ?? 0, memoryInMebiBytes: fields.ints[3] ?? 0 };
}

/** StreamRequest{count, intervalMs} from its protobuf bytes. */
function decodeStreamRequest(buf) {
  const fields = decodeFields(buf);
  return { count: fields.ints[1] ?? 0, intervalMs: fields.ints[2] ?? 0 };
}

/** A message's varint (as uint32) and length-delimited (as UTF-8) fields by number; others skipped. */
function decodeFields(buf) {
  const ints = {};
  const strings = {};
  let at = 0;
  while (at < buf.length) {
    let key;
    [key, at] = readVarint(buf, at);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) {
      let value;
      [value, at] = readVarint(buf, at);
      ints[field] = value >>> 0;
    } else if (wire === 2) {
      let length;
      [length, at] = readVarint(buf, at);
      if (at + length > buf.length) throw new Error('truncated field');
      strings[field] = buf.subarray(at, at + length).toString('utf8');
      at += length;
    } else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
  return { ints, strings };
}

function varint(value) {
  const bytes = [];
  let v = Math.max(0, Math.floor(value));
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** FaasReply as protobuf bytes (proto3: zero values are left out). */
function encodeFaasReply({ message, durationInMicroSec, memoryUsageInKb }) {
  const parts = [];
  const text = Buffer.from(message, 'utf8');
  if (text.length > 0) parts.push(Buffer.from([0x0a]), varint(text.length), text);
  if (durationInMicroSec > 0) parts.push(Buffer.from([0x10]), varint(Math.min(durationInMicroSec, 0xffffffff)));
  if (memoryUsageInKb > 0) parts.push(Buffer.from([0x18]), varint(Math.min(memoryUsageInKb, 0xffffffff)));
  return Buffer.concat(parts);
}

const GRPC = { OK: 0, INVALID_ARGUMENT: 3, UNIMPLEMENTED: 12, INTERNAL: 13 };

function grpcFailure(res, code, message) {
  // Headers, no message, then the status in the trailers.
  res.writeHead(200, { 'content-type': 'application/grpc' });
  res.addTrailers({ 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) });
  res.end();
}

/** One length-prefixed, uncompressed gRPC message. */
function grpcFrame(message) {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

const METHODS = { '/faas.Executor/Execute': [decodeFaasRequest, onExecute], '/faas.Streamer/ExecuteStream': [decodeStreamRequest, onExecuteStream] };

function onGrpcRequest(req, res, startedAt) {
  if (req.httpVersionMajor !== 2) return grpcFailure(res, GRPC.INTERNAL, 'gRPC needs HTTP/2');
  if (req.url === '/faas.Streamer/Echo') return onEcho(req, res);
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const method = METHODS[req.url];
    if (method === undefined) return grpcFailure(res, GRPC.UNIMPLEMENTED, `unknown method ${req.url}`);
    const body = Buffer.concat(chunks);
    if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
      return grpcFailure(res, GRPC.INVALID_ARGUMENT, 'expected one uncompressed length-prefixed message');
    }
    const [decode, serve] = method;
    let request;
    try {
      request = decode(body.subarray(5));
    } catch (err) {
      return grpcFailure(res, GRPC.INVALID_ARGUMENT, `bad request message: ${err.message}`);
    }
    serve(request, res, startedAt);
  });
}

function onExecute(request, res, startedAt) {
  const { durationUs } = execute({ runtimeMs: clampMs(request.runtimeInMilliSec), memoryMiB: request.memoryInMebiBytes, isEmpty: false }, startedAt);
  const reply = encodeFaasReply({ message: `OK - ${MACHINE}`, durationInMicroSec: durationUs, memoryUsageInKb: request.memoryInMebiBytes * 1024 });
  res.writeHead(200, { 'content-type': 'application/grpc' });
  res.addTrailers({ 'grpc-status': String(GRPC.OK), 'grpc-message': '' });
  res.end(grpcFrame(reply));
}

/** Bidirectional: each request message, as its frame completes, is answered "echo <count>". */
function onEcho(req, res) {
  res.writeHead(200, { 'content-type': 'application/grpc' });
  let pending = Buffer.alloc(0);
  let isFailed = false;
  req.on('data', (chunk) => {
    if (isFailed) return;
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const length = pending.readUInt32BE(1);
      if (pending[0] !== 0 || length > 1024 * 1024) {
        isFailed = true;
        res.addTrailers({ 'grpc-status': String(GRPC.INVALID_ARGUMENT), 'grpc-message': 'expected uncompressed messages of at most 1 MiB' });
        res.end();
        return;
      }
      if (pending.length < 5 + length) break;
      let request;
      try {
        request = decodeStreamRequest(pending.subarray(5, 5 + length));
      } catch (err) {
        isFailed = true;
        res.addTrailers({ 'grpc-status': String(GRPC.INVALID_ARGUMENT), 'grpc-message': encodeURIComponent(`bad StreamRequest: ${err.message}`) });
        res.end();
        return;
      }
      pending = pending.subarray(5 + length);
      res.write(grpcFrame(encodeFaasReply({ message: `echo ${request.count}`, durationInMicroSec: 0, memoryUsageInKb: 0 })));
    }
  });
  req.on('end', () => {
    if (isFailed) return;
    res.addTrailers({ 'grpc-status': String(GRPC.OK), 'grpc-message': '' });
    res.end();
  });
}

/** `count` replies "tick 0" … `intervalMs` apart (timers, no spinning), then grpc-status 0. */
function onExecuteStream({ count, intervalMs }, res, startedAt) {
  const total = Math.min(1000, count);
  const interval = Math.min(10_000, intervalMs);
  res.writeHead(200, { 'content-type': 'application/grpc' });
  let sent = 0;
  let timer;
  const next = () => {
    if (sent === total) {
      res.addTrailers({ 'grpc-status': String(GRPC.OK), 'grpc-message': '' });
      res.end();
      return;
    }
    const elapsedUs = Math.round((performance.now() - startedAt) * 1000);
    res.write(grpcFrame(encodeFaasReply({ message: `tick ${sent}`, durationInMicroSec: elapsedUs, memoryUsageInKb: 0 })));
    sent++;
    timer = setTimeout(next, sent === total ? 0 : interval);
  };
  // A client that cancels (or a deadline the platform enforces) stops the stream.
  res.on('close', () => clearTimeout(timer));
  next();
}

// ---- One port: the first bytes of a connection say HTTP/2 (its preface starts with "PRI ") or HTTP/1.1.

const http1 = createHttp1Server({ keepAliveTimeout: 60_000 }, onHttpRequest);
const http2 = createHttp2Server({}, onHttpRequest);
const PREFACE = Buffer.from('PRI ');

const server = createNetServer((socket) => {
  let head = Buffer.alloc(0);
  const onData = (chunk) => {
    head = Buffer.concat([head, chunk]);
    if (head.length < PREFACE.length && PREFACE.subarray(0, head.length).equals(head)) return;
    socket.off('data', onData);
    socket.pause();
    socket.unshift(head);
    // Both servers take the bytes already read from the socket's buffer (HTTP/2 sessions read it
    // when they attach; the HTTP/1.1 parser when the socket flows again).
    if (head.subarray(0, PREFACE.length).equals(PREFACE)) http2.emit('connection', socket);
    else {
      http1.emit('connection', socket);
      socket.resume();
    }
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
});

const port = Number(process.env.PORT ?? 8080);
server.listen(port, process.env.HOST ?? '0.0.0.0', () => {
  process.stdout.write(`trace function on :${server.address().port} (HTTP/1.1, h2c, gRPC), ${Math.round(ITERATIONS_PER_MS)} loop iterations/ms\n`);
});

// Nothing to finish: a stop ends the process at once (keep-alive connections would hold a close open).
const stop = () => process.exit(0);
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
