import { after, before } from 'node:test';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createLogger } from '../../src/observability/logger.ts';
import { RedisStore } from '../../src/dataplane/async/redis-store.ts';
import { asyncInvocationsSuite } from '../kit/async-suite.ts';
import { startRedis } from '../kit/redis.ts';

/** The async queue's suite (the embedded log's, unchanged) over Redis Streams with a consumer group, against a real redis-server. */

const logger = createLogger({ name: 'test', level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];
let port = 0;

before(async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  port = redis.port;
});

after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

asyncInvocationsSuite('redis', async () => {
  // One key prefix per test (its "data plane"); every open() is a new connection over the same keys, as after a restart.
  const prefix = `baton:async:${randomUUID()}:`;
  return {
    open: () => {
      const redis = new Redis({ port, host: '127.0.0.1' });
      redis.on('error', () => undefined);
      return new RedisStore(redis, prefix, 'dp-test', logger);
    },
  };
});
