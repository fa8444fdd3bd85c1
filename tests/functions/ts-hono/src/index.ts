import { Hono } from "hono";
import { greet, type Greeting } from "./greet.js";
import { explode } from "./fail.ts";
import banner from "./banner.txt" with { type: "text" };
import settings from "./settings.json" with { type: "json" };

type Env = { Bindings: { GREETING: string } };

const app = new Hono<Env>();

app.get("/hello/:name", (c) => {
  const greeting: Greeting = greet(c.env.GREETING, c.req.param("name"));
  return c.json({ ...greeting, banner: banner.trim(), settings });
});

app.get("/boom", () => explode("from a route"));

app.get("/lazy", async (c) => {
  const { answer } = await import("./lazy.ts");
  return c.text(String(answer()));
});

export default app;
