// A container function: the same greeting as hello, plus what the sandbox sees of itself.
import { readdirSync } from 'node:fs';

export async function handler(event, context) {
  return {
    message: `Hello from ${context.functionName}, in a container!`,
    path: event.rawPath,
    sandboxId: process.env.BATON_SANDBOX_ID,
    uid: process.getuid(),
    processes: readdirSync('/proc').filter((name) => /^\d+$/.test(name)).length,
  };
}
