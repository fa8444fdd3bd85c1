// Line numbers here matter: the end-to-end test expects the throw on line 9 of this file.
type Reason = string;

interface Wrapped {
  reason: Reason;
}

export function explode(reason: Reason): never {
  throw new Error(`exploded ${(({ reason }) as Wrapped).reason}`);
}
