// WebCrypto held to its bounds: PBKDF2 iterations capped, work on the blocking pool charged.

import {
  primordials,
  domException,
  performanceMod,
  cryptoMod,
  nonEnumerable,
  op_isola_live,
  op_isola_charge,
} from "ext:isola/00_base.js";
import {
  currentNext,
} from "ext:isola/01_invocation.js";
const {
  FunctionPrototypeCall,
  Number: NumberCtor,
  ObjectDefineProperty,
  PromiseResolve,
  MathRound,
  ReflectApply,
  ArrayPrototypeSlice,
  SafeArrayIterator,
  StringPrototypeToUpperCase,
} = primordials;


// deno_crypto derives bits on a blocking thread, off the isolate's CPU clock; as on Workers,
// PBKDF2 takes at most 100,000 iterations, so that one call's cost stays bounded.
const PBKDF2_MAX_ITERATIONS = 100000;
// Every member of the derivation algorithms' dictionaries (ECDH, X25519, HKDF, PBKDF2).
const DERIVE_MEMBERS = ["name", "hash", "salt", "iterations", "info", "public", "length"];

// The algorithm as a plain object whose members were each read once (a getter cannot show
// the check one count and deno_crypto another), refused if it asks PBKDF2 for too much.
function boundedDerivation(algorithm) {
  if (algorithm === null || typeof algorithm !== "object") return algorithm;
  const copy = {};
  for (let i = 0; i < DERIVE_MEMBERS.length; i++) {
    const value = algorithm[DERIVE_MEMBERS[i]];
    if (value !== undefined) copy[DERIVE_MEMBERS[i]] = value;
  }
  if (typeof copy.name === "string" && StringPrototypeToUpperCase(copy.name) === "PBKDF2") {
    const iterations = NumberCtor(copy.iterations);
    copy.iterations = iterations;
    if (iterations > PBKDF2_MAX_ITERATIONS) {
      throw new domException.DOMException(
        `Pbkdf2 failed: iteration counts above ${PBKDF2_MAX_ITERATIONS} are not supported (requested ${iterations})`,
        "NotSupportedError",
      );
    }
  }
  return copy;
}

{
  const SubtleCryptoPrototype = cryptoMod.SubtleCrypto.prototype;
  const deriveBits = SubtleCryptoPrototype.deriveBits;
  const deriveKey = SubtleCryptoPrototype.deriveKey;
  const bounded = {
    // The declared parameters keep each method's `length` (2 and 5) as the spec has it.
    async deriveBits(algorithm, baseKey, length = undefined) {
      return await FunctionPrototypeCall(
        deriveBits,
        this,
        boundedDerivation(algorithm),
        baseKey,
        length,
      );
    },
    async deriveKey(algorithm, baseKey, derivedKeyType, extractable, keyUsages) {
      return await ReflectApply(deriveKey, this, [
        boundedDerivation(algorithm),
        ...new SafeArrayIterator(ArrayPrototypeSlice(arguments, 1)),
      ]);
    },
  };
  for (const name of ["deriveBits", "deriveKey"]) {
    ObjectDefineProperty(SubtleCryptoPrototype, name, {
      __proto__: null,
      value: bounded[name],
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
}

// deno_crypto runs every SubtleCrypto method that does real work (hashing, ciphers,
// signatures, derivation, key generation and export) on the blocking pool, off the isolate
// thread's CPU clock, for as long as its input or parameters ask. An isolate's calls of these
// run one at a time, and each one's time is charged to the invocation that made it (or to the
// background budget): an invocation that spends its CPU time this way ends with
// `exceeded_cpu` like any other, and the calls it left queued do not run. One call at a time,
// its wall time is its thread's CPU time, or more when the machine is busy (then it is charged
// more, never less). `importKey` and `unwrapKey` run on the isolate's thread, on its clock.
const performanceNow = performanceMod.Performance.prototype.now;
const BLOCKING_SUBTLE = [
  "digest",
  "encrypt",
  "decrypt",
  "sign",
  "verify",
  "deriveBits",
  "deriveKey",
  "generateKey",
  "exportKey",
  "wrapKey",
  "encapsulateBits",
  "encapsulateKey",
];
let blockingTail = PromiseResolve();

function chargedSubtle(name, method) {
  const wrapper = {
    async [name]() {
      const next = currentNext();
      const turn = blockingTail;
      let done;
      blockingTail = new Promise((resolve) => {
        done = resolve;
      });
      try {
        await turn;
        if (next !== null && !op_isola_live(next.id)) {
          throw new domException.DOMException(
            "the invocation that asked for this has ended",
            "AbortError",
          );
        }
        const started = FunctionPrototypeCall(performanceNow, performanceMod.performance);
        try {
          return await ReflectApply(method, this, arguments);
        } finally {
          const took = FunctionPrototypeCall(performanceNow, performanceMod.performance) - started;
          op_isola_charge(next === null ? -1 : next.id, MathRound(took * 1000));
        }
      } finally {
        done();
      }
    },
  }[name];
  ObjectDefineProperty(wrapper, "length", nonEnumerable(method.length));
  return wrapper;
}

{
  const SubtleCryptoPrototype = cryptoMod.SubtleCrypto.prototype;
  for (let i = 0; i < BLOCKING_SUBTLE.length; i++) {
    const name = BLOCKING_SUBTLE[i];
    const method = SubtleCryptoPrototype[name];
    if (typeof method !== "function") continue;
    ObjectDefineProperty(SubtleCryptoPrototype, name, {
      __proto__: null,
      value: chargedSubtle(name, method),
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
}

export {
  PBKDF2_MAX_ITERATIONS,
  DERIVE_MEMBERS,
  boundedDerivation,
  performanceNow,
  BLOCKING_SUBTLE,
  blockingTail,
  chargedSubtle,
};
