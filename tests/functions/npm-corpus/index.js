import { runAll } from "./cases.mjs";

export default {
  async fetch() {
    return Response.json(await runAll());
  },
};
