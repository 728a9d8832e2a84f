import { Transform, type TransformCallback } from 'node:stream';

/**
 * Passes bytes through until more than `maxBytes` have gone by, then fails with the error
 * `tooLarge` makes, without passing the chunk that crossed the limit. Put after a decompressor it
 * stops the decompression at the limit (the pipeline aborts upstream), whatever the archive or
 * body does after it; in front of a sandbox it bounds a chunked body.
 */
export class ByteLimit extends Transform {
  readonly maxBytes: number;
  #bytes = 0;
  readonly #tooLarge: (maxBytes: number) => Error;

  constructor(maxBytes: number, tooLarge: (maxBytes: number) => Error) {
    super();
    this.maxBytes = maxBytes;
    this.#tooLarge = tooLarge;
  }

  /** Bytes passed so far (plus the chunk that crossed the limit, once it has). */
  get bytes(): number {
    return this.#bytes;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.maxBytes) {
      callback(this.#tooLarge(this.maxBytes));
      return;
    }
    callback(null, chunk);
  }
}
