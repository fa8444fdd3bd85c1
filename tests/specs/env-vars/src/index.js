export default {
  fetch(request, env) {
    return Response.json({ keys: Object.keys(env).sort(), greeting: env.GREETING, frozen: Object.isFrozen(env) });
  },
};
