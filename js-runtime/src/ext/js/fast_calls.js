// Loaded once per isolate, after it is made from the snapshot. Loading a lazy module is what
// makes deno_core attach the ops' fast-call overloads, which a snapshot cannot hold: until
// then every op is called through V8's slower API callback. The module has nothing else.
export {};
