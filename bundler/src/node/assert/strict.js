// node:assert/strict.
import { strict } from "node:assert";
export default strict;
export const { ok, equal, notEqual, deepEqual, notDeepEqual, throws, rejects, match, AssertionError } = strict;
