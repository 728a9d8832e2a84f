import { asyncInvocationsSuite, embeddedBacking } from '../kit/async-suite.ts';

/** The async queue's suite over the embedded segment log (the same suite runs over Redis in test/integration/async-redis.test.ts). */
asyncInvocationsSuite('embedded', embeddedBacking);
