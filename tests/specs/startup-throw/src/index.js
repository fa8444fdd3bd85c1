// A module that throws while it loads: every request answers exception.
throw new Error("cannot configure myself");

export default { fetch: () => new Response("unreachable") };
