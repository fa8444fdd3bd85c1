// Outbound fetch held to the `subrequests` limit.

import {
  primordials,
  cryptoMod,
  fetchMod,
  nonEnumerable,
  op_isola_outbound_span,
  request as requestMod,
} from "ext:isola/00_base.js";
import {
  HEADERS_AT,
  currentNext,
} from "ext:isola/01_invocation.js";
const {
  DateNow,
  ObjectDefineProperty,
  PromisePrototypeThen,
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
function invocationTraceparent(next) {
  const fields = next.fields;
  for (let i = HEADERS_AT; i + 1 < fields.length; i += 2) {
    if (fields[i] !== "traceparent") continue;
    return fields[i + 1].length === 55 ? fields[i + 1] : null;
  }
  return null;
}

function childTraceparent(parent) {
  const id = cryptoMod.crypto.getRandomValues(new Uint8Array(8));
  const hex = ArrayPrototypeMap(ArrayFrom(id), (b) => StringPrototypePadStart(NumberPrototypeToString(b, 16), 2, "0"));
  return `${StringPrototypeSlice(parent, 0, 36)}${ArrayPrototypeJoin(hex, "")}${StringPrototypeSlice(parent, 52)}`;
}

// A traced outbound request: its own span id in `traceparent`, and a span reported to the
// node when its response head arrives or it fails. The caller gets fetch's own promise.
function tracedFetch(fetch, parent, input, init) {
  let outbound;
  try {
    outbound = new requestMod.Request(input, init);
  } catch (e) {
    return PromiseReject(e);
  }
  let traceparent = outbound.headers.get("traceparent");
  if (traceparent === null) {
    traceparent = childTraceparent(parent);
    outbound.headers.set("traceparent", traceparent);
  }
  const { method, url } = outbound;
  const start = DateNow();
  const sent = fetch(outbound);
  const report = (status) =>
    op_isola_outbound_span(parent, traceparent, method, url, status, start, DateNow());
  PromisePrototypeThen(sent, (response) => report(response.status), () => report(0));
  return sent;
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
      const parent = invocationTraceparent(next);
      if (parent !== null) return tracedFetch(fetch, parent, input, init);
    }
    return fetch(input, init);
  }
  ObjectDefineProperty(globalThis, "fetch", nonEnumerable(limitedFetch));
}

export {
  subrequestCounts,
  limitSubrequests,
};
