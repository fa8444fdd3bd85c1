// node:assert: the strict and legacy assertions, AssertionError with actual/expected.
import { inspect, isDeepStrictEqual } from "node:util";

export class AssertionError extends Error {
  constructor(options) {
    const { message, actual, expected, operator } = options ?? {};
    super(message ?? `${inspect(actual)} ${operator} ${inspect(expected)}`);
    this.name = "AssertionError";
    this.code = "ERR_ASSERTION";
    this.actual = actual;
    this.expected = expected;
    this.operator = operator;
    this.generatedMessage = message === undefined;
  }
}

function fail(actual, expected, message, operator) {
  if (message instanceof Error) throw message;
  throw new AssertionError({ message, actual, expected, operator });
}

function looseDeepEqual(a, b) {
  // eslint-disable-next-line eqeqeq
  if (a == b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => looseDeepEqual(a[k], b[k]));
}

export function ok(value, message) {
  if (!value) fail(value, true, message ?? "The expression evaluated to a falsy value", "==");
}
export function equal(actual, expected, message) {
  // eslint-disable-next-line eqeqeq
  if (!(actual == expected || (Number.isNaN(actual) && Number.isNaN(expected)))) fail(actual, expected, message, "==");
}
export function notEqual(actual, expected, message) {
  // eslint-disable-next-line eqeqeq
  if (actual == expected) fail(actual, expected, message, "!=");
}
export function strictEqual(actual, expected, message) {
  if (!Object.is(actual, expected)) fail(actual, expected, message, "strictEqual");
}
export function notStrictEqual(actual, expected, message) {
  if (Object.is(actual, expected)) fail(actual, expected, message, "notStrictEqual");
}
export function deepEqual(actual, expected, message) {
  if (!looseDeepEqual(actual, expected)) fail(actual, expected, message, "deepEqual");
}
export function notDeepEqual(actual, expected, message) {
  if (looseDeepEqual(actual, expected)) fail(actual, expected, message, "notDeepEqual");
}
export function deepStrictEqual(actual, expected, message) {
  if (!isDeepStrictEqual(actual, expected)) fail(actual, expected, message, "deepStrictEqual");
}
export function notDeepStrictEqual(actual, expected, message) {
  if (isDeepStrictEqual(actual, expected)) fail(actual, expected, message, "notDeepStrictEqual");
}

function matches(error, expected) {
  if (expected === undefined) return true;
  if (typeof expected === "function") {
    if (expected.prototype !== undefined && error instanceof expected) return true;
    if (Error.isPrototypeOf(expected) || expected === Error) return false;
    return expected(error) === true;
  }
  if (expected instanceof RegExp) return expected.test(String(error?.message ?? error));
  if (typeof expected === "object") {
    return Object.keys(expected).every((k) =>
      expected[k] instanceof RegExp ? expected[k].test(error?.[k]) : isDeepStrictEqual(error?.[k], expected[k]),
    );
  }
  return false;
}

export function throws(fn, expected, message) {
  if (typeof expected === "string") [message, expected] = [expected, undefined];
  try {
    fn();
  } catch (error) {
    if (!matches(error, expected)) throw error;
    return;
  }
  fail(undefined, expected, message ?? "Missing expected exception.", "throws");
}
export function doesNotThrow(fn, message) {
  try {
    fn();
  } catch (error) {
    fail(error, undefined, message ?? `Got unwanted exception: ${error?.message}`, "doesNotThrow");
  }
}
export async function rejects(promiseOrFn, expected, message) {
  if (typeof expected === "string") [message, expected] = [expected, undefined];
  try {
    await (typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn);
  } catch (error) {
    if (!matches(error, expected)) throw error;
    return;
  }
  fail(undefined, expected, message ?? "Missing expected rejection.", "rejects");
}
export async function doesNotReject(promiseOrFn, message) {
  try {
    await (typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn);
  } catch (error) {
    fail(error, undefined, message ?? `Got unwanted rejection: ${error?.message}`, "doesNotReject");
  }
}
export function match(text, pattern, message) {
  if (!pattern.test(text)) fail(text, pattern, message, "match");
}
export function doesNotMatch(text, pattern, message) {
  if (pattern.test(text)) fail(text, pattern, message, "doesNotMatch");
}
export function ifError(value) {
  if (value !== null && value !== undefined) throw value;
}
export function failure(message) {
  fail(undefined, undefined, message ?? "Failed", "fail");
}

const assert = Object.assign((value, message) => ok(value, message), {
  ok, equal, notEqual, strictEqual, notStrictEqual, deepEqual, notDeepEqual, deepStrictEqual,
  notDeepStrictEqual, throws, doesNotThrow, rejects, doesNotReject, match, doesNotMatch, ifError,
  fail: failure, AssertionError,
});
export const strict = Object.assign((value, message) => ok(value, message), assert, {
  equal: strictEqual, notEqual: notStrictEqual, deepEqual: deepStrictEqual, notDeepEqual: notDeepStrictEqual,
});
assert.strict = strict;
strict.strict = strict;
export { failure as fail };
export default assert;
