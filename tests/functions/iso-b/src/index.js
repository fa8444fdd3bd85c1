let count = 0;

export default {
  fetch(request, env) {
    count += 1;
    return Response.json({
      count,
      leak: typeof globalThis.leakFromA,
      polluted: typeof [].polluted,
      env: Object.keys(env),
    });
  },
};
