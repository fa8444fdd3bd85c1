// A default-exported class: an instance per invocation, with ctx and env.
let instances = 0;

export default class Handler {
  constructor(ctx, env) {
    instances++;
    this.made = { ctx: typeof ctx.waitUntil, env: env.GREETING };
  }

  async fetch(request, env, ctx) {
    return Response.json({
      made: this.made,
      sameEnv: this.env === env,
      sameCtx: this.ctx === ctx,
      greeting: this.env.GREETING,
      fresh: instances >= 1,
    });
  }
}
