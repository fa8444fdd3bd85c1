// @ts-check
// A function answers HTTP requests on its routes (edge.toml). `edge-node dev` serves it on
// http://127.0.0.1:8080/ and reloads it when this file changes.

/** @type {import("../isola").ExportedHandler<{ GREETING: string }>} */
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return new Response(`${env.GREETING} from ${url.pathname}\n`);
  },
};
