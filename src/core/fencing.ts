import { BatonError } from './errors.ts';

/**
 * The receiving side of fencing: every state-changing message from a control plane carries the
 * epoch of the leader lease it holds (see `src/store/leader-lease.ts`). A receiver remembers the
 * highest epoch it has seen; a message from a lower epoch comes from a deposed leader and is
 * refused, one from the same or a higher epoch is taken (a higher one becomes the new highest).
 *
 * `highest` 4, message epoch 4 → 4 (taken); epoch 5 → 5 (taken, a new leader); epoch 3 → refused.
 *
 * @returns the new highest epoch
 * @throws BatonError ERR_STALE_EPOCH for an epoch below `highest`; ERR_INVALID_REQUEST for an epoch that is not a non-negative integer
 */
export function admitEpoch(highest: number, epoch: number, what = 'message'): number {
  if (!Number.isSafeInteger(epoch) || epoch < 0) {
    throw new BatonError('ERR_INVALID_REQUEST', `the ${what} carries an invalid leader epoch ${String(epoch)}`, { details: { epoch } });
  }
  if (epoch < highest) {
    throw new BatonError('ERR_STALE_EPOCH', `the ${what} comes from leader epoch ${epoch}, below the highest seen (${highest}): refused`, {
      details: { epoch, highest },
    });
  }
  return epoch;
}

/** `admitEpoch` with the highest epoch kept: one per receiver (a data plane, a worker). */
export class EpochFence {
  #highest = 0;

  /** The highest epoch taken so far (0 before any). */
  get highest(): number {
    return this.#highest;
  }

  /** @throws BatonError ERR_STALE_EPOCH (nothing changes) — see `admitEpoch` */
  admit(epoch: number, what?: string): void {
    this.#highest = admitEpoch(this.#highest, epoch, what);
  }

  /**
   * Learns of an epoch without a message to admit (a leader's answer to a registration names its
   * epoch): a higher one becomes the highest, a lower one (or an invalid one) is ignored.
   */
  observe(epoch: number | undefined): void {
    if (epoch !== undefined && Number.isSafeInteger(epoch) && epoch > this.#highest) this.#highest = epoch;
  }
}
