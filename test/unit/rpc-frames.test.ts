import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FrameDecoder, FrameError, encodeFrame } from '../../src/transport/rpc-frames.ts';

function decodeAll(chunks: readonly Buffer[], max = 1024 * 1024): unknown[] {
  const out: unknown[] = [];
  const decoder = new FrameDecoder(max, (v) => out.push(v));
  for (const chunk of chunks) decoder.push(chunk);
  assert.equal(decoder.buffered, 0, 'no bytes left over');
  return out;
}

describe('rpc frames', () => {
  test('a frame is a big-endian length and UTF-8 JSON', () => {
    const frame = encodeFrame([1, 'POST', '/x', { a: 'é' }], 1024) as Buffer;
    const json = '[1,"POST","/x",{"a":"é"}]';
    assert.equal(frame.readUInt32BE(0), Buffer.byteLength(json));
    assert.equal(frame.subarray(4).toString('utf8'), json);
  });

  test('encoding refuses a frame over the limit', () => {
    assert.equal(encodeFrame({ s: 'x'.repeat(100) }, 50), undefined);
  });

  test('frames survive any split into chunks, several per chunk or one over many', () => {
    fc.assert(fc.property(
      fc.array(fc.jsonValue(), { minLength: 1, maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 50 }),
      (values, cuts) => {
        const stream = Buffer.concat(values.map((v) => encodeFrame(v, 1 << 20) as Buffer));
        const chunks: Buffer[] = [];
        let at = 0;
        for (let i = 0; at < stream.length; i++) {
          const size = cuts[i % cuts.length] as number;
          chunks.push(stream.subarray(at, at + size));
          at += size;
        }
        // JSON has no -0 and no undefined in arrays; compare through a JSON round trip.
        assert.deepEqual(decodeAll(chunks), values.map((v) => JSON.parse(JSON.stringify(v))));
      },
    ));
  });

  test('a header announcing more than the limit is refused before its body arrives', () => {
    const decoder = new FrameDecoder(100, () => assert.fail('no frame expected'));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(101, 0);
    assert.throws(() => decoder.push(header), FrameError);
  });

  test('a frame that is not JSON is a protocol error', () => {
    const body = Buffer.from('{not json');
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length, 0);
    const decoder = new FrameDecoder(100, () => assert.fail('no frame expected'));
    assert.throws(() => decoder.push(Buffer.concat([header, body])), /not valid JSON/);
  });
});
