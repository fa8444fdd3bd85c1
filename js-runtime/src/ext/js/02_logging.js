// console and the function's log: records go to Rust with the invocation they belong to.

import {
  primordials,
  consoleMod,
  op_isola_log,
  op_isola_mark,
} from "ext:isola/00_base.js";
import {
  currentNext,
} from "ext:isola/01_invocation.js";
const {
  StringPrototypeEndsWith,
  StringPrototypeSlice,
} = primordials;

// console levels as deno_web's Console reports them: 0 debug, 1 log/info, 2 warn, 3 error.
function print(message, level) {
  if (StringPrototypeEndsWith(message, "\n")) {
    message = StringPrototypeSlice(message, 0, -1);
  }
  const next = currentNext();
  if (next === null) {
    op_isola_log(level, message, "");
  } else {
    // What ran up to the line is the invocation's (see `markCurrent`).
    op_isola_mark(next.id);
    op_isola_log(level, message, next.invocationId);
  }
}
// Log records are plain text: no terminal colours in messages or stacks.
consoleMod.setNoColorFns(() => true, () => true);
const console = new consoleMod.Console(print);

// An error as the log shows it: its stack when it has one. A function's value may be hostile
// (a throwing getter, a proxy): describing it never throws.
function describe(error) {
  try {
    if (error !== null && typeof error === "object") {
      const stack = error.stack;
      if (typeof stack === "string") return stack;
    }
    return consoleMod.inspect(error);
  } catch {
    return "(a thrown value that cannot be described)";
  }
}

export {
  print,
  console,
  describe,
};
