// Types of the Isola runtime: the handlers a function exports, `ctx`, and the bindings
// `env` holds. Written by `edge-node init`; edit `Env` in your entry module, not this file.

/** What a function's default export may hold. `Env` is your function's `env`. */
export interface ExportedHandler<Env = unknown> {
  /** An HTTP request on one of the function's routes. */
  fetch?(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response>;
  /** A cron schedule of edge.toml fired (or `edge-node invoke NAME --cron`). */
  scheduled?(controller: ScheduledController, env: Env, ctx: ExecutionContext): void | Promise<void>;
  /** A batch of messages from a queue the function consumes. */
  queue?(batch: MessageBatch, env: Env, ctx: ExecutionContext): void | Promise<void>;
  /** An object of a watched bucket was uploaded or deleted. */
  storage?(event: StorageEvent, env: Env, ctx: ExecutionContext): void | Promise<void>;
  /** A record of a watched table changed. */
  record?(event: RecordEvent, env: Env, ctx: ExecutionContext): void | Promise<void>;
}

export interface ExecutionContext {
  /** Keeps the invocation alive after its answer until `promise` settles (within its limits). */
  waitUntil(promise: Promise<unknown>): void;
  passThroughOnException(): void;
}

export interface ScheduledController {
  /** The schedule that fired, as written in edge.toml. */
  readonly cron: string;
  /** When it was due, in milliseconds since the epoch. */
  readonly scheduledTime: number;
}

export interface Message<Body = unknown> {
  readonly id: string;
  readonly timestamp: Date;
  /** How many times it was delivered, this time included. */
  readonly attempts: number;
  readonly body: Body;
  ack(): void;
  retry(options?: { delaySeconds?: number }): void;
}

export interface MessageBatch<Body = unknown> {
  readonly queue: string;
  readonly messages: readonly Message<Body>[];
  ackAll(): void;
  retryAll(options?: { delaySeconds?: number }): void;
}

/** `env.NAME` for `NAME = { queue = "..." }`: a body is any structured-cloneable value. */
export interface Queue<Body = unknown> {
  send(body: Body): Promise<void>;
  sendBatch(messages: Iterable<{ body: Body }>): Promise<void>;
}

export interface StoredObject {
  readonly key: string;
  readonly size: number;
  readonly etag: string;
  readonly contentType?: string;
}

export interface ObjectBody extends StoredObject {
  readonly body: Uint8Array<ArrayBuffer>;
  text(): string;
  json<T = unknown>(): T;
  arrayBuffer(): ArrayBuffer;
}

export interface ListOptions {
  prefix?: string;
  limit?: number;
  cursor?: string;
}

/** `env.NAME` for `NAME = { bucket = "..." }`. */
export interface Bucket {
  put(key: string, data: string | ArrayBuffer | ArrayBufferView, options?: { contentType?: string }): Promise<unknown>;
  get(key: string): Promise<ObjectBody | null>;
  delete(key: string): Promise<unknown>;
  list(options?: ListOptions): Promise<{ objects: StoredObject[]; cursor?: string }>;
}

/** `env.NAME` for `NAME = { table = "..." }`: records are JSON values by key. */
export interface Table<Value = unknown> {
  get(key: string): Promise<Value | null>;
  put(key: string, value: Value): Promise<void>;
  delete(key: string): Promise<unknown>;
  list(options?: ListOptions): Promise<{ records: { key: string; value: Value }[]; cursor?: string }>;
}

export interface StorageEvent {
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
  readonly etag: string;
  readonly op: "put" | "delete";
}

export interface RecordEvent<Value = unknown> {
  readonly table: string;
  readonly key: string;
  readonly op: "put" | "delete";
  readonly value: Value | null;
  readonly previous: Value | null;
}

/** What the node adds to an incoming request. */
export interface IncomingRequestCf {
  /** The client's address (also the `CF-Connecting-IP` header). */
  readonly clientIp: string;
  /** The serving node's region (`[node] region`). */
  readonly region: string;
}

declare global {
  interface Request {
    readonly cf: IncomingRequestCf;
  }
  /** Workers' pair of connected sockets: answer `new Response(null, { status: 101, webSocket: client })`. */
  class WebSocketPair {
    [key: string]: WebSocket;
    0: WebSocket;
    1: WebSocket;
  }
  interface WebSocket {
    /** Starts delivering the accepted socket's events. */
    accept(): void;
  }
  interface ResponseInit {
    webSocket?: WebSocket | null;
  }
  interface CacheStorage {
    readonly default: Cache;
  }
}
