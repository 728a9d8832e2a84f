// The lint keeps two rules of the architecture that the type checker cannot:
//  - time and turns come from the injected Clock (src/core/clock.ts): no real timer and no read of
//    the time elsewhere, except in the composition roots (main.ts), the CLI and the load generator,
//    which drive real processes and real time;
//  - internal calls between the planes go through the one contract table (src/api/contracts.ts);
//  - dependencies point one way: api and core import no plane, policy imports only api and core,
//    and the planes never import each other (they share src/api).
import tsParser from '@typescript-eslint/parser';

const timeMessage = 'use the injected Clock (src/core/clock.ts): now(), setTimeout(), defer(); real timers only in core/clock.ts and main.ts';

const timeRules = {
  'no-restricted-globals': ['error',
    ...['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate'].map((name) => ({ name, message: timeMessage })),
  ],
  'no-restricted-properties': ['error',
    { object: 'Date', property: 'now', message: timeMessage },
    { object: 'performance', property: 'now', message: timeMessage },
  ],
};

const noEnum = { selector: 'TSEnumDeclaration', message: 'use a string-literal union, not an enum (style.md)' };
const noBareDate = { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: timeMessage };
const noInternalPathLiteral = {
  selector: 'Literal[value=/^\\/internal\\/v1\\//]',
  message: 'an internal call goes through its contract (src/api/contracts.ts: JsonRouter.serve, JsonClient.invoke), not a path literal',
};

/** `no-restricted-imports` for a folder that may not import the given top-level folders of src/. */
function mayNotImport(...folders) {
  return {
    'no-restricted-imports': ['error', {
      patterns: folders.map((folder) => ({ group: [`**/${folder}/*`, `**/${folder}/**`], message: `this folder may not import src/${folder}/ (see docs/architecture.md: dependencies point one way)` })),
    }],
  };
}

export default [
  { ignores: ['dist/**', 'node_modules/**'] },
  {
    files: ['src/**/*.ts'],
    languageOptions: { parser: tsParser, ecmaVersion: 2023, sourceType: 'module' },
    rules: { ...timeRules, 'no-restricted-syntax': ['error', noEnum, noBareDate, noInternalPathLiteral] },
  },
  {
    files: ['src/core/clock.ts', 'src/**/main.ts', 'src/cli/**/*.ts', 'src/loadgen/**/*.ts'],
    rules: { 'no-restricted-globals': 'off', 'no-restricted-properties': 'off', 'no-restricted-syntax': ['error', noEnum, noInternalPathLiteral] },
  },
  { files: ['src/api/contracts.ts', 'src/transport/rpc-server.ts'], rules: { 'no-restricted-syntax': ['error', noEnum, noBareDate] } },
  { files: ['src/api/**/*.ts', 'src/core/**/*.ts'], rules: mayNotImport('controlplane', 'dataplane', 'worker', 'policy', 'store', 'transport', 'cli', 'loadgen', 'observability') },
  { files: ['src/policy/**/*.ts'], rules: mayNotImport('controlplane', 'dataplane', 'worker', 'store', 'transport', 'cli', 'loadgen', 'observability') },
  { files: ['src/controlplane/**/*.ts'], rules: mayNotImport('dataplane', 'worker', 'cli', 'loadgen') },
  { files: ['src/dataplane/**/*.ts'], rules: mayNotImport('controlplane', 'worker', 'cli', 'loadgen') },
  { files: ['src/worker/**/*.ts'], rules: mayNotImport('controlplane', 'dataplane', 'cli', 'loadgen') },
  { files: ['src/transport/**/*.ts', 'src/store/**/*.ts', 'src/observability/**/*.ts'], rules: mayNotImport('controlplane', 'dataplane', 'worker', 'cli', 'loadgen') },
];
