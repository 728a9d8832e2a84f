import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { digestOf } from '../../core/archive.ts';
import { stringFlag, UsageError, type Command, type CommandContext } from '../command.ts';
import { buildImage, IMAGE_BASES, type ImageBase } from '../image/image-builder.ts';
import { splitCommand } from '../manifest.ts';

/** `baton image build`: an OCI image archive from a function folder, with no registry. */
export const imageCommand: Command = {
  name: 'image',
  summary: 'build an OCI image archive of a function folder (runtime container)',
  usage: `baton image build DIR --base node|python|busybox -o FILE (--handler FILE.EXPORT | --command "CMD ARGS…")

The image holds the host's own node, python3 or busybox binary and the shared libraries it needs,
the folder's files under /function (its working directory) and Baton's handler runner. Deploy it
with: baton deploy NAME --image FILE --runtime container

flags:
  --base NAME           node, python or busybox
  -o, --output FILE     where to write the archive (an OCI image layout, gzipped tar)
  --handler FILE.EXPORT a handler image (base node): the runner serves FILE's EXPORT
  --command "CMD ARGS"  the image's command: an executable serving HTTP on $PORT`,
  options: {
    base: { type: 'string' },
    output: { type: 'string', short: 'o' },
    handler: { type: 'string' },
    command: { type: 'string' },
  },
  positionals: { min: 2, max: 2, names: 'build DIR' },
  run: runImage,
};

async function runImage(ctx: CommandContext): Promise<number> {
  const [verb, dir] = ctx.positionals as [string, string];
  if (verb !== 'build') throw new UsageError(`unknown image command '${verb}' (commands: build)`);
  const base = stringFlag(ctx.values, 'base');
  if (base === undefined || !(IMAGE_BASES as readonly string[]).includes(base)) throw new UsageError(`--base must be one of ${IMAGE_BASES.join(', ')}`);
  const output = stringFlag(ctx.values, 'output');
  if (output === undefined) throw new UsageError('-o FILE is required');
  const handler = stringFlag(ctx.values, 'handler');
  const command = stringFlag(ctx.values, 'command');
  if (handler !== undefined && command !== undefined) throw new UsageError('give --handler or --command, not both');
  const archive = await buildImage({
    dir: resolve(ctx.io.cwd, dir), base: base as ImageBase,
    ...(handler === undefined ? {} : { handler }), ...(command === undefined ? {} : { command: splitCommand(command) }),
  });
  const file = resolve(ctx.io.cwd, output);
  await writeFile(file, archive);
  if (ctx.isJson) ctx.printJson({ file, digest: digestOf(archive), bytes: archive.length });
  else ctx.print(`wrote ${file} (${archive.length} bytes, ${digestOf(archive)})`);
  return 0;
}
