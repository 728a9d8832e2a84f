import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { FunctionRecord, FunctionSpecInput } from '../../api/function-spec.ts';
import { packDirectory } from '../../core/archive.ts';
import { BatonError } from '../../core/errors.ts';
import { stringFlag, stringListFlag, UsageError, type Command, type CommandContext } from '../command.ts';
import type { BatonClient } from '../client.ts';
import { applyDeployFlags, loadManifest, validateDraft, type DeployPlan } from '../manifest.ts';

/**
 * `baton deploy`: builds the spec from a manifest and/or flags, validates it, packs the folder,
 * uploads the artifact, then creates the function — or updates it when it already exists. Nothing
 * is sent before the spec is valid and the folder exists.
 */
export const deployCommand: Command = {
  name: 'deploy',
  summary: 'create or update a function from a folder',
  usage: `baton deploy [-f baton.yaml] [NAME] [flags]
       baton deploy NAME --dir DIR (--handler FILE.EXPORT | --command "CMD ARGS…") [flags]
       baton deploy NAME --image FILE --runtime container [--handler FILE.EXPORT | --command "CMD ARGS…"] [flags]

Without NAME and -f, ./baton.yaml is used when present. Flags override the manifest.

flags:
  -f, --file PATH       manifest (the spec's fields except artifact, plus dir)
  --dir DIR             folder to pack and upload (default: the manifest's folder)
  --image FILE          an OCI image archive to upload instead (runtime container; see baton image build)
  --max-pids N          processes per sandbox at most (default: 256; enforced by the container runtime)
  --handler FILE.EXPORT module and export of a handler function, e.g. index.handler
  --command "CMD ARGS"  an executable serving HTTP on $PORT (split like a shell, not run by one)
  --runtime NAME        sandbox runtime (default: process)
  --protocol P          http1 (default) | h2c: how the data plane reaches the sandboxes (h2c for gRPC)
  --concurrency N       in-flight invocations per sandbox (default: 1)
  --min-scale N         sandboxes kept at all times (default: 0)
  --max-scale N         sandboxes at most (default: 100)
  --memory MiB          memory per sandbox (default: 128)
  --cpu MILLI           CPU per sandbox in millicores (default: 100)
  --timeout-ms N        invocation timeout (default: 60000)
  --env K=V             environment variable; repeatable`,
  options: {
    file: { type: 'string', short: 'f' },
    dir: { type: 'string' },
    image: { type: 'string' },
    'max-pids': { type: 'string' },
    handler: { type: 'string' },
    command: { type: 'string' },
    runtime: { type: 'string' },
    protocol: { type: 'string' },
    concurrency: { type: 'string' },
    'min-scale': { type: 'string' },
    'max-scale': { type: 'string' },
    memory: { type: 'string' },
    cpu: { type: 'string' },
    'timeout-ms': { type: 'string' },
    env: { type: 'string', multiple: true },
  },
  positionals: { min: 0, max: 1, names: 'NAME' },
  run: runDeploy,
};

async function runDeploy(ctx: CommandContext): Promise<number> {
  const plan = await buildPlan(ctx);
  validateDraft(plan.spec);
  const image = stringFlag(ctx.values, 'image');
  let source: { dir: string } | { image: string };
  if (image !== undefined) {
    source = { image: resolve(ctx.io.cwd, image) };
  } else {
    if (plan.dir === undefined) throw new UsageError('--dir is required without a manifest (or pass -f baton.yaml, or --image FILE)');
    await assertDirectory(plan.dir);
    source = { dir: plan.dir };
  }

  const { action, record, digest, bytes } = await deployPlan(ctx.client(), { spec: plan.spec, ...source }, ctx.io.signal);

  if (ctx.isJson) {
    ctx.printJson({ action, function: record, artifact: { digest, bytes } });
    return 0;
  }
  ctx.print(`${action} function ${record.spec.name} (generation ${record.generation})`);
  ctx.print(`  artifact  ${digest} (${bytes} bytes from ${'image' in source ? source.image : source.dir})`);
  ctx.print(`  invoke    baton invoke ${record.spec.name}`);
  return 0;
}

/** Manifest (explicit, or ./baton.yaml when neither NAME nor -f is given) overlaid with flags. */
export async function buildPlan(ctx: CommandContext): Promise<DeployPlan> {
  const { values, positionals, io } = ctx;
  const file = stringFlag(values, 'file');
  let base: DeployPlan | undefined;
  if (file !== undefined) base = await loadManifest(resolve(io.cwd, file));
  else if (positionals.length === 0) {
    const implicit = resolve(io.cwd, 'baton.yaml');
    if (!(await isFile(implicit))) throw new UsageError("'baton deploy' needs NAME, -f MANIFEST, or a baton.yaml in the current folder");
    base = await loadManifest(implicit);
  }
  return applyDeployFlags(base, {
    name: positionals[0],
    dir: stringFlag(values, 'dir'),
    runtime: stringFlag(values, 'runtime'),
    protocol: stringFlag(values, 'protocol'),
    handler: stringFlag(values, 'handler'),
    command: stringFlag(values, 'command'),
    concurrency: stringFlag(values, 'concurrency'),
    minScale: stringFlag(values, 'min-scale'),
    maxScale: stringFlag(values, 'max-scale'),
    memory: stringFlag(values, 'memory'),
    maxPids: stringFlag(values, 'max-pids'),
    cpu: stringFlag(values, 'cpu'),
    timeoutMs: stringFlag(values, 'timeout-ms'),
    env: stringListFlag(values, 'env'),
  }, io.cwd);
}

/** Packs `dir` (or reads the image archive), uploads it, then creates the function or, when it exists, updates it. */
export async function deployPlan(
  client: BatonClient,
  plan: { readonly spec: DeployPlan['spec'] } & ({ readonly dir: string } | { readonly image: string }),
  signal?: AbortSignal,
): Promise<{ action: 'created' | 'updated'; record: FunctionRecord; digest: string; bytes: number }> {
  const archive = 'image' in plan ? await readImage(plan.image) : await packDirectory(plan.dir);
  const { digest } = await client.uploadArtifact(archive, signal === undefined ? {} : { signal });
  const spec = { ...plan.spec, artifact: digest } as FunctionSpecInput;
  try {
    return { action: 'created', record: await client.createFunction(spec), digest, bytes: archive.length };
  } catch (err) {
    if (!(err instanceof BatonError) || err.code !== 'ERR_FUNCTION_EXISTS') throw err;
  }
  return { action: 'updated', record: await client.updateFunction(spec.name, spec), digest, bytes: archive.length };
}

async function readImage(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new BatonError('ERR_INVALID_SPEC', `invalid function spec: image: cannot read '${file}': ${(err as Error).message}`, {
      details: { issues: [{ field: 'image', rule: 'must be a readable OCI image archive (baton image build)' }] }, cause: err,
    });
  }
}

async function assertDirectory(dir: string): Promise<void> {
  const info = await stat(dir).catch(() => undefined);
  if (info?.isDirectory() !== true) {
    throw new BatonError('ERR_INVALID_SPEC', `invalid function spec: dir: '${dir}' is not a folder`, {
      details: { issues: [{ field: 'dir', rule: 'must be an existing folder' }] },
    });
  }
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() === true;
}
