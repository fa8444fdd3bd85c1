// A Hono app (https://hono.dev): run `npm install` in this folder first; `edge-node bundle`
// and `dev` take packages from node_modules.
import { Hono } from "hono";

export interface Env {
  GREETING: string;
}

const app = new Hono<{ Bindings: Env }>();

app.get("/", (c) => c.text(`${c.env.GREETING} from Hono\n`));
app.get("/hello/:name", (c) => c.json({ message: `${c.env.GREETING}, ${c.req.param("name")}` }));

export default app;
