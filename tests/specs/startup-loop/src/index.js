// Top-level code that never ends: the isolate is stopped by its startup CPU budget, and the
// function answers exceeded_cpu instead of hanging the node.
while (true) {}

export default { fetch: () => new Response("unreachable") };
