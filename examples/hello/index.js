// A first Baton function: answers every request with a JSON greeting.
export async function handler(event, context) {
  return {
    message: `Hello from ${context.functionName}!`,
    method: event.requestContext.http.method,
    path: event.rawPath,
    sandboxId: process.env.BATON_SANDBOX_ID,
    version: process.env.GREETING_VERSION ?? 'v1',
  };
}
