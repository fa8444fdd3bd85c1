// Outbound fetch held to the `subrequests` limit.

import {
  primordials,
  fetchMod,
  nonEnumerable,
} from "ext:isola/00_base.js";
import {
  currentInvocation,
} from "ext:isola/01_invocation.js";
const {
  ObjectDefineProperty,
  PromiseReject,
  SafeMap,
  TypeError,
} = primordials;


// Outbound requests made by each live invocation, held to the `subrequests` limit.
const subrequestCounts = new SafeMap();

function limitSubrequests(max) {
  const fetch = fetchMod.fetch;
  function limitedFetch(input, init = undefined) {
    const id = currentInvocation();
    if (id !== null) {
      const count = (subrequestCounts.get(id) ?? 0) + 1;
      if (count > max) {
        return PromiseReject(
          new TypeError(`too many subrequests: an invocation may make at most ${max}`),
        );
      }
      subrequestCounts.set(id, count);
    }
    return fetch(input, init);
  }
  ObjectDefineProperty(globalThis, "fetch", nonEnumerable(limitedFetch));
}

export {
  subrequestCounts,
  limitSubrequests,
};
