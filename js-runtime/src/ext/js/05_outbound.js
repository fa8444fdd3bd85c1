// Outbound fetch held to the `subrequests` limit.

import {
  primordials,
  cryptoMod,
  fetchMod,
  nonEnumerable,
  request as requestMod,
} from "ext:isola/00_base.js";
import {
  HEADERS_AT,
  currentNext,
} from "ext:isola/01_invocation.js";
const {
  ObjectDefineProperty,
  PromiseReject,
  SafeMap,
  StringPrototypePadStart,
  StringPrototypeSlice,
  TypeError,
  Uint8Array,
  ArrayPrototypeJoin,
  ArrayPrototypeMap,
  ArrayFrom,
  NumberPrototypeToString,
} = primordials;

// The `traceparent` an outbound request of invocation `next` carries: the invocation's trace
// (the node wrote its `traceparent`, naming the node's span) with a new span id for this
// request; `null` when the invocation's request carried no trace.
function outboundTraceparent(next) {
  const fields = next.fields;
  for (let i = HEADERS_AT; i + 1 < fields.length; i += 2) {
    if (fields[i] !== "traceparent") continue;
    const parent = fields[i + 1];
    if (parent.length !== 55) return null;
    const id = cryptoMod.crypto.getRandomValues(new Uint8Array(8));
    const hex = ArrayPrototypeMap(ArrayFrom(id), (b) => StringPrototypePadStart(NumberPrototypeToString(b, 16), 2, "0"));
    return `${StringPrototypeSlice(parent, 0, 36)}${ArrayPrototypeJoin(hex, "")}${StringPrototypeSlice(parent, 52)}`;
  }
  return null;
}


// Outbound requests made by each live invocation, held to the `subrequests` limit.
const subrequestCounts = new SafeMap();

function limitSubrequests(max) {
  const fetch = fetchMod.fetch;
  function limitedFetch(input, init = undefined) {
    const next = currentNext();
    if (next !== null) {
      const id = next.invocationId;
      const count = (subrequestCounts.get(id) ?? 0) + 1;
      if (count > max) {
        return PromiseReject(
          new TypeError(`too many subrequests: an invocation may make at most ${max}`),
        );
      }
      subrequestCounts.set(id, count);
      const traceparent = outboundTraceparent(next);
      if (traceparent !== null) {
        const outbound = new requestMod.Request(input, init);
        if (!outbound.headers.has("traceparent")) outbound.headers.set("traceparent", traceparent);
        return fetch(outbound);
      }
    }
    return fetch(input, init);
  }
  ObjectDefineProperty(globalThis, "fetch", nonEnumerable(limitedFetch));
}

export {
  subrequestCounts,
  limitSubrequests,
};
