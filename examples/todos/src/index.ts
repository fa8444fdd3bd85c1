import { type Todo, newTodo } from "./todo.ts";

interface Env {
  EVENTS: { send(body: unknown): Promise<void> };
  TODOS: {
    get(key: string): Promise<Todo | null>;
    put(key: string, value: Todo): Promise<void>;
    list(options?: { prefix?: string }): Promise<{ records: { key: string; value: Todo }[] }>;
  };
}

interface Message {
  body: { title: string; at: string };
  ack(): void;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/todos" && request.method === "POST") {
      const { title } = (await request.json()) as { title: string };
      // Accepted now, written by the queue consumer.
      await env.EVENTS.send({ title, at: new Date().toISOString() });
      return Response.json({ accepted: title }, { status: 202 });
    }
    if (url.pathname === "/todos") {
      const { records } = await env.TODOS.list();
      return Response.json(records.map((r) => r.value));
    }
    return new Response("POST /todos or GET /todos\n", { status: 404 });
  },

  async queue(batch: { messages: Message[] }, env: Env): Promise<void> {
    for (const message of batch.messages) {
      const todo = newTodo(message.body.title, message.body.at);
      await env.TODOS.put(todo.id, todo);
      console.log(`stored ${todo.id}: ${todo.title}`);
    }
  },

  async scheduled(event: { cron: string }, env: Env): Promise<void> {
    const { records } = await env.TODOS.list();
    console.log(`${event.cron}: ${records.length} todos`);
  },
};
