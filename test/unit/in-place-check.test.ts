import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { z } from 'zod';
import * as dataplaneApi from '../../src/api/dataplane.ts';
import * as functionSpecApi from '../../src/api/function-spec.ts';
import { compileInPlaceCheck } from '../../src/api/in-place-check.ts';
import { parseOrThrow } from '../../src/api/validate.ts';
import * as workerApi from '../../src/api/worker.ts';
import { BatonError } from '../../src/core/errors.ts';

/** Every schema the API modules export, by name. */
const SCHEMAS: [string, z.ZodType][] = Object.entries({ ...dataplaneApi, ...functionSpecApi, ...workerApi })
  .filter(([name, value]) => name.endsWith('Schema') && value instanceof z.ZodType)
  .map(([name, value]) => [name, value as z.ZodType]);

/** The messages the daemons exchange per cold start: these must take the in-place path. */
const HOT = [
  'demandReportSchema', 'sandboxEventBatchesRequestSchema', 'sandboxEventsRequestSchema', 'processSandboxesRequestSchema',
  'createSandboxesRequestSchema', 'deleteSandboxesRequestSchema', 'routingUpdateSchema', 'drainWaitRequestSchema',
  'heartbeatRequestSchema', 'dataplaneHeartbeatSchema',
];

interface Def {
  type: string; checks?: { _zod: { def: Record<string, unknown> } }[]; shape?: Record<string, z.ZodType>; element?: z.ZodType;
  innerType?: z.ZodType; values?: unknown[]; entries?: Record<string, unknown>; options?: z.ZodType[]; valueType?: z.ZodType; format?: string;
}
const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** Values that break some rule somewhere: wrong types, bounds, extra structure. */
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(-1, 0, 0.5, 1.5, 2 ** 53, -(2 ** 53), '', 'x', 'ready', null, true, false, [], {}, { extra: 1 }),
  fc.jsonValue({ maxDepth: 1 }),
);

/**
 * Values of a schema's shape, built from its definition. With `broken`, any part may be junk and an
 * object may carry a key it does not know, so both sides of every rule are reached.
 */
function arbitraryOf(schema: z.ZodType, broken: boolean): fc.Arbitrary<unknown> {
  const valid = validOf(schema, broken);
  return broken ? fc.oneof({ weight: 40, arbitrary: valid }, { weight: 1, arbitrary: junk }) : valid;
}

function validOf(schema: z.ZodType, broken: boolean): fc.Arbitrary<unknown> {
  const def = defOf(schema);
  const checks = (def.checks ?? []).map((c) => c._zod.def);
  switch (def.type) {
    case 'string': {
      const regex = checks.find((c) => c.check === 'string_format' && c.format === 'regex')?.pattern as RegExp | undefined;
      if (regex !== undefined) return fc.stringMatching(regex);
      const min = checks.find((c) => c.check === 'min_length')?.minimum as number | undefined;
      const max = checks.find((c) => c.check === 'max_length')?.maximum as number | undefined;
      return fc.string({ minLength: min ?? 0, maxLength: Math.min(max ?? 8, 8) });
    }
    case 'number': {
      const isInt = def.format === 'safeint' || checks.some((c) => c.check === 'number_format');
      const low = checks.find((c) => c.check === 'greater_than')?.value as number | undefined;
      const high = checks.find((c) => c.check === 'less_than')?.value as number | undefined;
      const min = low ?? -1e6;
      const max = high ?? 1e6;
      return isInt ? fc.integer({ min: Math.ceil(min), max: Math.floor(max) }) : fc.oneof(fc.constantFrom(min, max), fc.double({ min, max, noNaN: true }));
    }
    case 'boolean': return fc.boolean();
    case 'literal': return fc.constantFrom(...(def.values ?? []));
    case 'enum': return fc.constantFrom(...Object.values(def.entries ?? {}));
    case 'nullable': return fc.option(arbitraryOf(def.innerType as z.ZodType, broken), { nil: null });
    case 'optional': return arbitraryOf(def.innerType as z.ZodType, broken);
    case 'array': {
      const min = checks.find((c) => c.check === 'min_length')?.minimum as number | undefined;
      return fc.array(arbitraryOf(def.element as z.ZodType, broken), { minLength: min ?? 0, maxLength: Math.max(min ?? 0, 3) });
    }
    case 'object': {
      const shape = def.shape ?? {};
      const required = Object.keys(shape).filter((k) => defOf(shape[k] as z.ZodType).type !== 'optional');
      const record = fc.record(Object.fromEntries(Object.entries(shape).map(([k, v]) => [k, arbitraryOf(v, broken)])), { requiredKeys: required });
      if (!broken) return record;
      const rarely = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.oneof({ weight: 30, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb });
      return fc.tuple(record, rarely(fc.constantFrom('extra', '__proto__', 'constructor')), rarely(fc.constantFrom(...Object.keys(shape))))
        .map(([value, extraKey, droppedKey]) => {
          const out: Record<string, unknown> = { ...value };
          if (droppedKey !== null) delete out[droppedKey];
          return extraKey === null ? out : JSON.parse(JSON.stringify(out).replace(/^\{/, `{"${extraKey}":1,`).replace(/,\}$/, '}'));
        });
    }
    case 'union': return fc.oneof(...(def.options ?? []).map((o) => arbitraryOf(o, broken)));
    case 'record': {
      const key = broken ? fc.oneof({ weight: 20, arbitrary: fc.string({ maxLength: 4 }) }, { weight: 1, arbitrary: fc.constant('__proto__') }) : fc.string({ maxLength: 4 });
      return fc.dictionary(key, arbitraryOf(def.valueType as z.ZodType, broken), { maxKeys: 3 });
    }
    default: return junk;
  }
}

/** What the daemons actually receive: JSON text, parsed. */
const wire = (value: unknown): unknown => JSON.parse(JSON.stringify(value) ?? 'null');

describe('in-place checks of the API schemas', () => {
  it('cover every per-cold-start message; a schema with defaults (the function spec) is left to zod', () => {
    const byName = new Map(SCHEMAS);
    for (const name of HOT) assert.ok(compileInPlaceCheck(byName.get(name) as z.ZodType) !== undefined, `${name} should compile`);
    assert.equal(compileInPlaceCheck(functionSpecApi.functionSpecSchema), undefined);
  });

  for (const [name, schema] of SCHEMAS) {
    const check = compileInPlaceCheck(schema);
    if (check === undefined) continue;

    it(`${name}: a value the check passes is one zod accepts with an equal output; valid values pass`, () => {
      let passed = 0;
      let failed = 0;
      fc.assert(fc.property(arbitraryOf(schema, true), (raw) => {
        const value = wire(raw);
        const result = schema.safeParse(value);
        if (check(value)) {
          passed++;
          assert.ok(result.success, `passed the check but zod refused: ${JSON.stringify(value)}`);
          assert.deepEqual(result.data, value);
        } else {
          failed++;
        }
      }), { numRuns: 300 });
      // Both sides of the contract were exercised.
      assert.ok(passed > 0 && failed > 0, `passed ${passed}, failed ${failed}`);
      fc.assert(fc.property(validOf(schema, false), (raw) => {
        const value = wire(raw);
        assert.ok(schema.safeParse(value).success, `generator made an invalid value: ${JSON.stringify(value)}`);
        assert.ok(check(value), `valid value not passed: ${JSON.stringify(value)}`);
      }), { numRuns: 100 });
    });
  }

  it('parseOrThrow hands back a valid message itself, and words a broken one as zod does', () => {
    const report = wire({ dataplaneId: 'dp-1', isPoke: true, entries: [{ function: 'f', concurrency: 0.5, queued: 1, inflight: 0 }] });
    assert.equal(parseOrThrow(dataplaneApi.demandReportSchema, report, 'ERR_INVALID_REQUEST', 'demand report'), report);
    const broken = wire({ dataplaneId: 'dp-1', isPoke: true, entries: [{ function: 'f', concurrency: -1, queued: 1, inflight: 0 }] });
    assert.throws(() => parseOrThrow(dataplaneApi.demandReportSchema, broken, 'ERR_INVALID_REQUEST', 'demand report'), (err: unknown) => {
      assert.ok(err instanceof BatonError);
      assert.equal(err.code, 'ERR_INVALID_REQUEST');
      assert.match(err.message, /^invalid demand report: entries\.0\.concurrency: /);
      return true;
    });
  });

  it('refuses what JSON cannot carry but a caller might pass: non-finite numbers, class instances, null prototypes', () => {
    const check = compileInPlaceCheck(dataplaneApi.drainWaitRequestSchema) as (v: unknown) => boolean;
    assert.equal(check({ sandboxIds: [], timeoutMs: 5 }), true);
    assert.equal(check({ sandboxIds: [], timeoutMs: Number.POSITIVE_INFINITY }), false);
    assert.equal(check({ sandboxIds: [], timeoutMs: Number.NaN }), false);
    assert.equal(check(Object.assign(Object.create(null) as object, { sandboxIds: [], timeoutMs: 5 })), false);
    assert.equal(check(new (class { sandboxIds = []; timeoutMs = 5; })()), false);
  });
});
