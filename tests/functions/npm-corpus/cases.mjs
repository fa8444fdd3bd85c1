// One call per package, each answering a JSON value (or a promise of one). Each case imports
// its package itself, so one package that fails to load fails only its own case. The function
// runs these in an isolate; oracle.mjs runs them in Node; the suite compares the answers.
export const cases = {
  "@noble/hashes": async () => {
    const { sha256 } = await import("@noble/hashes/sha2.js"); const { bytesToHex } = await import("@noble/hashes/utils.js");
    return (() => bytesToHex(sha256(new TextEncoder().encode("abc"))))();
  },
  axios: async () => {
    const axios = (await import("axios")).default;
    return (() => axios.getUri({ url: "/items", baseURL: "https://api.example.com", params: { q: "a b", n: 2 } }))();
  },
  bcryptjs: async () => {
    const bcrypt = (await import("bcryptjs")).default;
    return (() => bcrypt.hashSync("secret", "$2a$04$abcdefghijklmnopqrstuu"))();
  },
  bytes: async () => {
    const bytes = (await import("bytes")).default;
    return (() => [bytes(1536), bytes("1.5MB")])();
  },
  classnames: async () => {
    const classNames = (await import("classnames")).default;
    return (() => classNames("a", { b: true, c: false }, ["d"]))();
  },
  clsx: async () => {
    const { clsx } = await import("clsx");
    return (() => clsx("a", { b: true, c: false }, ["d", ["e"]]))();
  },
  "content-type": async () => {
    const contentType = (await import("content-type")).default;
    return (() => contentType.parse("text/html; charset=utf-8"))();
  },
  cookie: async () => {
    const cookie = await import("cookie");
    return (() => [cookie.parse("a=1; b=two%20words"), cookie.serialize("n", "v w", { httpOnly: true, maxAge: 60 })])();
  },
  "date-fns": async () => {
    const { addDays, format } = await import("date-fns");
    return (() => format(addDays(new Date(Date.UTC(2024, 0, 30, 12)), 3), "yyyy-MM-dd"))();
  },
  dayjs: async () => {
    const dayjs = (await import("dayjs")).default;
    return (() => dayjs("2024-01-31T00:00:00.000Z").add(1, "month").toISOString())();
  },
  debug: async () => {
    const debug = (await import("debug")).default;
    return (() => typeof debug("x"))();
  },
  deepmerge: async () => {
    const deepmerge = (await import("deepmerge")).default;
    return (() => deepmerge({ a: [1], b: { c: 1 } }, { a: [2], b: { d: 2 } }))();
  },
  "escape-html": async () => {
    const escapeHtml = (await import("escape-html")).default;
    return (() => escapeHtml(`<a href="x">'&'</a>`))();
  },
  "fast-deep-equal": async () => {
    const equal = (await import("fast-deep-equal")).default;
    return (() => [equal({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }), equal({ a: 1 }, { a: "1" })])();
  },
  "fast-json-stable-stringify": async () => {
    const stableStringify = (await import("fast-json-stable-stringify")).default;
    return (() => stableStringify({ b: 2, a: { d: 1, c: [3, 1] } }))();
  },
  handlebars: async () => {
    const Handlebars = (await import("handlebars")).default;
    return (() => Handlebars.compile("Hi {{name}}, {{#each xs}}[{{this}}]{{/each}}")({ name: "<Ada>", xs: [1, 2] }))();
  },
  he: async () => {
    const he = (await import("he")).default;
    return (() => [he.encode("ä < ü"), he.decode("&lt;&eacute;&#x1F600;")])();
  },
  immer: async () => {
    const { produce } = await import("immer");
    return (() => produce({ a: { b: 1 }, c: [1] }, (d) => { d.a.b = 2; d.c.push(2); }))();
  },
  jose: async () => {
    const jose = await import("jose");
    return (async () => {
    const key = new TextEncoder().encode("a-string-secret-at-least-256-bits-long");
    const token = await new jose.SignJWT({ sub: "ada" }).setProtectedHeader({ alg: "HS256" }).setIssuedAt(0).sign(key);
    const { payload } = await jose.jwtVerify(token, key);
    return [token, payload];
  })();
  },
  "js-yaml": async () => {
    const yaml = await import("js-yaml");
    return (() => yaml.load("a: 1\nb: [x, y]\nc: {d: true}\n"))();
  },
  jsonwebtoken: async () => {
    const jwt = (await import("jsonwebtoken")).default;
    return (() => {
    const token = jwt.sign({ sub: "ada" }, "secret", { noTimestamp: true });
    return [token, jwt.verify(token, "secret")];
  })();
  },
  lodash: async () => {
    const _ = (await import("lodash")).default;
    return (() => [_.chunk([1, 2, 3, 4, 5], 2), _.camelCase("Foo Bar-baz"), _.get({ a: [{ b: 3 }] }, "a[0].b"), _.groupBy([1.2, 1.5, 2.1], Math.floor)])();
  },
  "markdown-it": async () => {
    const MarkdownIt = (await import("markdown-it")).default;
    return (() => new MarkdownIt().render("# Title\n\n*em* and `code`"))();
  },
  marked: async () => {
    const { marked } = await import("marked");
    return (() => marked.parse("## Hi\n\n- a\n- b"))();
  },
  "mime-types": async () => {
    const mime = (await import("mime-types")).default;
    return (() => [mime.lookup("file.json"), mime.contentType("html"), mime.extension("image/png")])();
  },
  moment: async () => {
    const moment = (await import("moment")).default;
    return (() => moment.utc("2024-02-29").add(1, "year").format("YYYY-MM-DD dddd"))();
  },
  ms: async () => {
    const ms = (await import("ms")).default;
    return (() => [ms("2 days"), ms(90000), ms(60000, { long: true })])();
  },
  mustache: async () => {
    const Mustache = (await import("mustache")).default;
    return (() => Mustache.render("{{greeting}}, {{#people}}{{name}};{{/people}}", { greeting: "Hi", people: [{ name: "a" }, { name: "b" }] }))();
  },
  nanoid: async () => {
    const { nanoid } = await import("nanoid");
    return (() => [nanoid().length, /^[A-Za-z0-9_-]+$/.test(nanoid())])();
  },
  papaparse: async () => {
    const Papa = (await import("papaparse")).default;
    return (() => Papa.parse("a,b\n1,2\n3,4", { header: true, dynamicTyping: true }).data)();
  },
  pluralize: async () => {
    const pluralize = (await import("pluralize")).default;
    return (() => [pluralize("person"), pluralize("box", 1, true), pluralize.singular("geese")])();
  },
  qs: async () => {
    const qs = (await import("qs")).default;
    return (() => [qs.parse("a[b][c]=1&d[]=2&d[]=3"), qs.stringify({ a: { b: [1, 2] } }, { encode: false })])();
  },
  "query-string": async () => {
    const queryString = (await import("query-string")).default; const { z } = await import("zod");
    return (() => [queryString.parse("?a=1&b=2&b=3"), queryString.stringify({ z: 1, a: [2, 3] })])();
  },
  ramda: async () => {
    const R = await import("ramda");
    return (() => R.pipe(R.map(R.multiply(2)), R.filter((n) => n > 2), R.sum)([1, 2, 3]))();
  },
  semver: async () => {
    const semver = (await import("semver")).default;
    return (() => [semver.satisfies("1.4.2", "^1.2.0"), semver.inc("1.2.3", "minor"), semver.maxSatisfying(["1.0.0", "1.5.0", "2.0.0"], "~1.x")])();
  },
  slugify: async () => {
    const slugify = (await import("slugify")).default;
    return (() => slugify("Hello Wörld & friends!", { lower: true }))();
  },
  superjson: async () => {
    const superjson = (await import("superjson")).default;
    return (() => superjson.stringify({ d: new Date(0), s: new Set([1]), m: new Map([["k", 1n]]) }))();
  },
  "tiny-invariant": async () => {
    const invariant = (await import("tiny-invariant")).default;
    return (() => {
    try {
      invariant(false, "nope");
      return "no throw";
    } catch (e) {
      return e.message;
    }
  })();
  },
  ulid: async () => {
    const { ulid } = await import("ulid");
    return (() => [ulid().length, /^[0-9A-HJKMNP-TV-Z]{26}$/.test(ulid())])();
  },
  underscore: async () => {
    const underscore = (await import("underscore")).default;
    return (() => underscore.chain([3, 1, 2]).sortBy().map((n) => n * 10).value())();
  },
  "url-parse": async () => {
    const URLParse = (await import("url-parse")).default;
    return (() => {
    const u = new URLParse("https://user:pw@example.com:8080/p/a?x=1#h", true);
    return [u.hostname, u.port, u.pathname, u.query, u.hash, u.auth];
  })();
  },
  uuid: async () => {
    const { v4: uuidv4, v5: uuidv5, validate: uuidValidate } = await import("uuid");
    return (() => [uuidValidate(uuidv4()), uuidv5("hello", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")])();
  },
  validator: async () => {
    const validator = (await import("validator")).default;
    return (() => [validator.isEmail("ada@example.com"), validator.isEmail("nope"), validator.escape("<b>")])();
  },
  yaml: async () => {
    const YAML = (await import("yaml")).default; const { z } = await import("zod");
    return (() => [YAML.parse("x: [1, 2]\ny: z\n"), YAML.stringify({ a: [1, { b: 2 }] })])();
  },
  yup: async () => {
    const yup = await import("yup");
    return (async () => {
    const schema = yup.object({ name: yup.string().required(), age: yup.number().min(0) });
    return [await schema.validate({ name: "Ada", age: "36" }), await schema.isValid({ age: -1 })];
  })();
  },
  zod: async () => {
    const { z } = await import("zod");
    return (() => {
    const schema = z.object({ name: z.string(), tags: z.array(z.string()).default([]) });
    const bad = schema.safeParse({ name: 1 });
    return [schema.parse({ name: "Ada" }), bad.success, bad.error.issues[0].path];
  })();
  },
};

// Every case, each answered with its value or its error, in name order.
export async function runAll() {
  const out = {};
  for (const name of Object.keys(cases).sort()) {
    try {
      out[name] = { value: await cases[name]() };
    } catch (error) {
      out[name] = { error: String(error?.stack ?? error) };
    }
  }
  return JSON.parse(JSON.stringify(out));
}
