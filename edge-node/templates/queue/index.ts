// A producer and its consumer: POST a JSON body and it is queued (durably, before the 202);
// the queue handler gets it in a batch. While `edge-node dev` runs, send one by hand with
// the `edge-node invoke ... --queue` command dev prints.
import type { ExportedHandler, MessageBatch, Queue } from "../isola.d.ts";

interface Job {
  task: string;
}

export interface Env {
  JOBS: Queue<Job>;
}

export default {
  async fetch(request, env) {
    if (request.method !== "POST") {
      return new Response('POST {"task": "..."} to queue a job\n');
    }
    const job = (await request.json()) as Job;
    await env.JOBS.send(job);
    return Response.json({ queued: job.task }, { status: 202 });
  },

  async queue(batch: MessageBatch<Job>) {
    for (const message of batch.messages) {
      console.log(`job ${message.body.task} (attempt ${message.attempts})`);
      message.ack();
    }
  },
} satisfies ExportedHandler<Env>;
