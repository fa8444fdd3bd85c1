// A function run on a schedule (edge.toml's [[triggers.cron]]). While `edge-node dev` runs,
// fire it at once with the `edge-node invoke ... --cron` command dev prints.
import type { ExportedHandler, Table } from "../isola.d.ts";

export interface Env {
  RUNS: Table<{ at: string; cron: string }>;
}

export default {
  async scheduled(controller, env) {
    const at = new Date(controller.scheduledTime).toISOString();
    await env.RUNS.put(at, { at, cron: controller.cron });
    console.log(`ran for ${controller.cron} at ${at}`);
  },

  // The runs so far, newest last.
  async fetch(_request, env) {
    const { records } = await env.RUNS.list();
    return Response.json(records.map((r) => r.value));
  },
} satisfies ExportedHandler<Env>;
