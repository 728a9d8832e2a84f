import { fileURLToPath } from 'node:url';
import { DIGEST_PATTERN, type FunctionSpecInput } from '../api/function-spec.ts';
import { packDirectory } from '../core/archive.ts';
import { BatonError } from '../core/errors.ts';
import { JsonRouter, reply, type Handler } from '../transport/json-router.ts';
import { requireScope } from './management-auth.ts';
import { managed, type RouteDeps } from './routes.ts';
import type { DataplaneMembership } from './dataplane-membership.ts';
import type { FunctionRegistry } from './function-registry.ts';

/**
 * Dirigent's function-registration front door, so that Invitro (and Dirigent's scripts) register
 * functions with Baton unmodified: `POST /registerService` with Dirigent's form fields
 * (`application/x-www-form-urlencoded`), answered as Dirigent does — 200 with the data planes'
 * invocation addresses, `ip:port;ip:port…`. It is served on the control plane's port and, when
 * `registrationPort` is set, on a listener of its own that also takes `POST /` (Dirigent mounts the
 * handler on its catch-all) and `GET /health`, as Dirigent's registration server (port 9091).
 *
 * The form translates to `FunctionRegistry.create` (mapping in docs/dirigent.md):
 *   name → name; image → runtime and code (see `imageToCode`); requested_cpu → resources.cpuMilli;
 *   requested_memory → resources.memoryMiB; scaling_upper_bound / scaling_lower_bound →
 *   scaling.maxScale / minScale; cold_start_sweep=true → one sandbox at most, removed as soon as idle
 *   (Dirigent's sweep autoscaling: 6 s stable and 2 s panic windows); port_forwarding (guest port,
 *   then tcp|udp) is checked and otherwise unused: Baton gives every sandbox its port in $PORT.
 * A taken name is 409 ERR_FUNCTION_EXISTS (Dirigent: 409); a bad field 400 ERR_INVALID_REQUEST or
 * ERR_INVALID_SPEC, naming it; nothing is registered then.
 */

export interface DirigentRouteDeps extends Pick<RouteDeps, 'auth' | 'audit'> {
  readonly registry: FunctionRegistry;
  readonly dataplanes: DataplaneMembership;
}

/** Image names that select the emulated runtime: Dirigent's HTTP test-function images, and `emulated`. */
export const EMULATED_IMAGES: readonly RegExp[] = [
  /^emulated(:.*)?$/,
  /^(empty|trace)$/, // Dirigent's Firecracker names
  /(^|\/)dirigent_(trace|empty)_function(:[^/]*)?$/,
];

/**
 * Image names of gRPC trace functions (`faas.Executor/Execute`, what Invitro calls with
 * `InvokeProtocol: grpc`): served by Baton's own trace function (examples/trace-function, which
 * speaks HTTP/1.1, h2c and gRPC) in the process runtime, reached over h2c.
 */
export const GRPC_TRACE_IMAGES: readonly RegExp[] = [
  /(^|\/)dirigent_grpc_function(:[^/]*)?$/,
  /(^|\/)invitro_trace_function(:[^/]*)?$/,
];

/** Stands for the trace function's artifact in `imageToCode`; the route uploads it and puts its digest in. */
export const TRACE_FUNCTION_ARTIFACT = 'trace-function';
const TRACE_FUNCTION_DIR = fileURLToPath(new URL('../../examples/trace-function/', import.meta.url));

/** Default command of a function registered by artifact digest: the trace function's. */
export const DEFAULT_DIGEST_COMMAND = ['node', 'server.js'] as const;

const MAX_FORM_BYTES = 64 * 1024;

function invalid(field: string, rule: string): BatonError {
  return new BatonError('ERR_INVALID_REQUEST', `form field ${field} ${rule}`, { details: { field, rule } });
}

/**
 * The runtime and code an `image` names: an emulated image name → runtime `emulated`; a gRPC
 * trace-function image → Baton's trace function (process runtime, `protocol: h2c`);
 * `sha256:<64 hex>` (an artifact uploaded with `PUT /v1/artifacts`) → runtime `process` running
 * `command` (a Baton form field, split on spaces; default `node server.js`). Any other image
 * reference: ERR_INVALID_REQUEST (a registry image cannot be pulled; an OCI image archive is
 * deployed with `baton deploy --image`).
 */
export function imageToCode(image: string, command: string | undefined): Pick<FunctionSpecInput, 'runtime' | 'artifact' | 'command' | 'protocol'> {
  if (EMULATED_IMAGES.some((pattern) => pattern.test(image))) return { runtime: 'emulated' };
  if (GRPC_TRACE_IMAGES.some((pattern) => pattern.test(image))) {
    return { runtime: 'process', artifact: TRACE_FUNCTION_ARTIFACT, command: [...DEFAULT_DIGEST_COMMAND], protocol: 'h2c' };
  }
  if (DIGEST_PATTERN.test(image)) {
    const argv = command === undefined ? [...DEFAULT_DIGEST_COMMAND] : command.split(' ').filter((a) => a !== '');
    if (argv.length === 0) throw invalid('command', 'must name a program');
    return { runtime: 'process', artifact: image, command: argv };
  }
  throw invalid('image', `"${image}" names nothing Baton can run from a registration: use "emulated" (or a Dirigent/Invitro test-function image), or sha256:<digest> of an uploaded artifact; Baton pulls no registry images (deploy an OCI image archive with baton deploy --image)`);
}

function optionalInt(form: URLSearchParams, field: string, min: number, max: number): number | undefined {
  const raw = form.get(field);
  if (raw === null || raw === '') return undefined;
  if (!/^-?\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) throw invalid(field, `must be an integer in [${min}, ${max}], got "${raw}"`);
  return Number(raw);
}

/** The spec a Dirigent registration form asks for (pure). */
export function formToSpec(form: URLSearchParams): FunctionSpecInput {
  const name = form.get('name');
  if (name === null || name === '') throw invalid('name', 'is required');
  const image = form.get('image');
  if (image === null || image === '') throw invalid('image', 'is required');
  const ports = form.getAll('port_forwarding');
  if (ports.length % 2 !== 0) throw invalid('port_forwarding', 'comes in pairs: the guest port, then tcp or udp');
  for (let i = 0; i < ports.length; i += 2) {
    if (!/^\d+$/.test(ports[i] ?? '') || Number(ports[i]) < 1 || Number(ports[i]) > 65_535) throw invalid('port_forwarding', `port "${ports[i]}" is not in [1, 65535]`);
    if (ports[i + 1] !== 'tcp' && ports[i + 1] !== 'udp') throw invalid('port_forwarding', `protocol "${ports[i + 1]}" is not tcp or udp`);
  }
  const sweep = form.get('cold_start_sweep');
  if (sweep !== null && sweep !== 'true' && sweep !== 'false') throw invalid('cold_start_sweep', `must be true or false, got "${sweep}"`);
  const cpuMilli = optionalInt(form, 'requested_cpu', 1, 1_000_000);
  const memoryMiB = optionalInt(form, 'requested_memory', 1, 1_048_576);
  const maxScale = optionalInt(form, 'scaling_upper_bound', 1, 10_000);
  const minScale = optionalInt(form, 'scaling_lower_bound', 0, 10_000);
  const scaling: NonNullable<FunctionSpecInput['scaling']> = sweep === 'true'
    ? { minScale: 0, maxScale: 1, stableWindowMs: 6_000, panicWindowMs: 2_000, scaleToZeroGraceMs: 0 }
    : { ...(maxScale === undefined ? {} : { maxScale }), ...(minScale === undefined ? {} : { minScale }) };
  const command = form.get('command') ?? undefined;
  return {
    name, ...imageToCode(image, command),
    resources: { ...(cpuMilli === undefined ? {} : { cpuMilli }), ...(memoryMiB === undefined ? {} : { memoryMiB }) },
    scaling,
  };
}

/** `host:port` of every ready data plane's invocation address, `;`-separated (Dirigent's answer). */
export function dataplaneAddresses(dataplanes: DataplaneMembership): string {
  return [...dataplanes.values()].filter((d) => d.state === 'ready').map((d) => {
    try {
      return new URL(d.proxyUrl).host;
    } catch {
      return d.proxyUrl;
    }
  }).join(';');
}

let traceFunctionUpload: Promise<string> | undefined;

/** The trace function's artifact digest, uploaded at the first registration that needs it (once per process; a failure is tried again next time). */
function traceFunctionDigest(registry: FunctionRegistry): Promise<string> {
  traceFunctionUpload ??= (async () => {
    const archive = await packDirectory(TRACE_FUNCTION_DIR).catch((err: unknown) => {
      throw new BatonError('ERR_INVALID_REQUEST', `a gRPC trace-function image needs Baton's examples/trace-function, which this installation does not have (${err instanceof Error ? err.message : String(err)})`);
    });
    return (await registry.putArtifact(archive)).digest;
  })();
  traceFunctionUpload.catch(() => { traceFunctionUpload = undefined; });
  return traceFunctionUpload;
}

/** With `authMode: token` a deployer token whose scope covers the name is needed, as for `POST /v1/functions`. */
function registerHandler(deps: DirigentRouteDeps): Handler {
  return managed(deps, 'deploy', 'function.create', async (ctx, who, audit) => {
    const text = (await ctx.body(MAX_FORM_BYTES)).toString('utf8');
    const spec = formToSpec(new URLSearchParams(text));
    audit.target = spec.name;
    requireScope(who, spec.name);
    await deps.registry.create(spec.artifact === TRACE_FUNCTION_ARTIFACT ? { ...spec, artifact: await traceFunctionDigest(deps.registry) } : spec);
    return { status: 200, raw: { data: dataplaneAddresses(deps.dataplanes), contentType: 'text/plain; charset=utf-8' } };
  });
}

/** Adds `POST /registerService` to the control plane's router. */
export function addDirigentRoutes(router: JsonRouter, deps: DirigentRouteDeps): void {
  router.on('POST', '/registerService', registerHandler(deps));
}

/** The router of Dirigent's registration server on a port of its own: `POST /registerService`, `POST /`, `GET /health`. */
export function createRegistrationRouter(deps: DirigentRouteDeps): JsonRouter {
  const router = new JsonRouter({ maxBodyBytes: MAX_FORM_BYTES });
  router.on('POST', '/registerService', registerHandler(deps));
  router.on('POST', '/', registerHandler(deps));
  router.on('GET', '/health', () => reply(200, { status: 'ok' }));
  return router;
}
