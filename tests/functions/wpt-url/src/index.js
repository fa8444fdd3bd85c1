// Runs WPT's URL test files, POSTed to it, the way WPT's own harnesses do: `/urltestdata`
// (url-constructor and url-origin), `/setters` (url-setters) and `/toascii` (toascii.window).
// Answers how many cases passed, of how many, and the first failures.

const FIELDS = ["href", "protocol", "username", "password", "host", "hostname", "port",
  "pathname", "search", "hash"];

function constructor(cases) {
  const failures = [];
  let total = 0;
  for (const c of cases) {
    if (typeof c === "string") continue;
    total++;
    const base = c.base === null ? undefined : c.base;
    let url;
    try {
      url = new URL(c.input, base);
    } catch {
      if (!c.failure) failures.push({ input: c.input, base: c.base, got: "failure" });
      continue;
    }
    if (c.failure) {
      failures.push({ input: c.input, base: c.base, got: url.href, expected: "failure" });
      continue;
    }
    const wrong = {};
    for (const field of FIELDS) if (url[field] !== c[field]) wrong[field] = [url[field], c[field]];
    if ("origin" in c && url.origin !== c.origin) wrong.origin = [url.origin, c.origin];
    if ("searchParams" in c && url.searchParams.toString() !== c.searchParams) {
      wrong.searchParams = [url.searchParams.toString(), c.searchParams];
    }
    if (Object.keys(wrong).length > 0) failures.push({ input: c.input, base: c.base, wrong });
  }
  return { total, failures };
}

function setters(tests) {
  const failures = [];
  let total = 0;
  for (const [setter, cases] of Object.entries(tests)) {
    if (setter === "comment") continue;
    for (const c of cases) {
      total++;
      const url = new URL(c.href);
      url[setter] = c.new_value;
      const wrong = {};
      for (const [field, value] of Object.entries(c.expected)) {
        if (url[field] !== value) wrong[field] = [url[field], value];
      }
      if (Object.keys(wrong).length > 0) {
        failures.push({ setter, href: c.href, value: c.new_value, wrong });
      }
    }
  }
  return { total, failures };
}

function toascii(cases) {
  const failures = [];
  let total = 0;
  for (const c of cases) {
    if (typeof c === "string") continue;
    total++;
    let got;
    try {
      const url = new URL(`https://${c.input}/x`);
      got = url.host === url.hostname ? url.host : `${url.host} / ${url.hostname}`;
    } catch {
      got = null;
    }
    if (got !== c.output) failures.push({ input: c.input, got, expected: c.output });
  }
  return { total, failures };
}

const RUNS = { "/urltestdata": constructor, "/setters": setters, "/toascii": toascii };

export default {
  async fetch(request) {
    const run = RUNS[new URL(request.url).pathname];
    if (run === undefined) return new Response("no such file", { status: 404 });
    const { total, failures } = run(await request.json());
    return Response.json({ passed: total - failures.length, total, failures: failures.slice(0, 40) });
  },
};
