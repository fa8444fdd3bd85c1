// Writes to its own globals and module state; iso-b must never see them.
let count = 0;
globalThis.leakFromA = "a was here";
Array.prototype.polluted = "by a";

export default {
  fetch(request, env) {
    count += 1;
    return Response.json({ count, leak: globalThis.leakFromA, env: Object.keys(env) });
  },
};
