// A TypeScript function: `edge-node dev` transpiles it as it serves it, and stack traces
// point at this file's lines.
import type { ExportedHandler } from "../isola.d.ts";

// What `env` holds: edge.toml's [vars] and secrets (strings) and its [bindings].
export interface Env {
  GREETING: string;
}

interface Greeting {
  name: string;
}

export default {
  async fetch(request, env) {
    if (request.method === "POST") {
      const { name } = (await request.json()) as Greeting;
      return Response.json({ message: `${env.GREETING}, ${name}` });
    }
    return new Response(`${env.GREETING}: POST {"name": "..."} to be greeted\n`);
  },
} satisfies ExportedHandler<Env>;
