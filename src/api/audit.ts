/** One management change as the audit log keeps it. Never a token: only its public id. */
export interface AuditEntry {
  /** Grows by one per entry, across restarts of this control plane (`baton audit --follow` reads on from it). */
  readonly seq: number;
  /** ISO-8601 wall-clock time the call was answered. */
  readonly at: string;
  /** The caller's token id; null without a valid token (the call was then refused) or with `authMode: none`. */
  readonly tokenId: string | null;
  /** What was asked, e.g. `function.create`, `token.revoke`. */
  readonly action: string;
  /** What it acted on (a function name, a token id, an artifact digest), when known. */
  readonly target: string | null;
  /** The HTTP status of the answer. */
  readonly status: number;
  /** The error code when it failed. */
  readonly code?: string;
}

