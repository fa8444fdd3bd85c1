// Event handlers: scheduled, queue, storage, record.

import {
  core,
  primordials,
  op_isola_fail,
  op_isola_event_blob,
  op_isola_event_result,
} from "ext:isola/00_base.js";
import {
  describe,
  print,
} from "ext:isola/02_logging.js";
import {
  runInvocation,
  settle,
} from "ext:isola/06_contract.js";
const {
  ArrayPrototypePush,
  FunctionPrototypeCall,
  JSONParse,
  JSONStringify,
  ObjectFreeze,
  SafeMap,
} = primordials;


// A queue batch as Workers shapes it; the handler's verdict per message is collected.
function messageBatch(id, payload) {
  const acked = new SafeMap();
  const messages = payload.messages.map((m) => {
    const bytes = op_isola_event_blob(id, m.blob);
    const body = m.encoding === "json" ? JSONParse(core.decode(bytes)) : core.deserialize(bytes);
    return ObjectFreeze({
      id: m.id,
      timestamp: new Date(m.timestamp),
      attempts: m.attempts,
      body,
      ack() {
        acked.set(m.id, { ack: true });
      },
      retry(options) {
        acked.set(m.id, { ack: false, delaySeconds: options?.delaySeconds ?? null });
      },
    });
  });
  const batch = ObjectFreeze({
    queue: payload.queue,
    messages: ObjectFreeze(messages),
    ackAll() {
      for (const m of messages) if (!acked.has(m.id)) acked.set(m.id, { ack: true });
    },
    retryAll(options) {
      for (const m of messages) {
        if (!acked.has(m.id)) acked.set(m.id, { ack: false, delaySeconds: options?.delaySeconds ?? null });
      }
    },
  });
  return { batch, verdicts: acked };
}

function invokeEvent(handler, env, next) {
  return runInvocation(next, async (id, ctx, waitUntil) => {
    const fn = handler[next.handler];
    if (typeof fn !== "function") {
      const message = `the function has no ${next.handler} handler`;
      print(message, 3);
      op_isola_fail(id, "exception", message);
      return;
    }
    const payload = JSONParse(next.payload);
    let result = {};
    try {
      if (next.handler === "queue") {
        const { batch, verdicts } = messageBatch(id, payload);
        await FunctionPrototypeCall(fn, handler, batch, env, ctx);
        const out = [];
        for (const [messageId, verdict] of verdicts) {
          ArrayPrototypePush(out, { id: messageId, ...verdict });
        }
        result = { verdicts: out };
      } else if (next.handler === "scheduled") {
        const event = ObjectFreeze({
          type: "scheduled",
          cron: payload.cron,
          scheduledTime: payload.scheduledTime,
          noRetry() {},
        });
        await FunctionPrototypeCall(fn, handler, event, env, ctx);
      } else {
        await FunctionPrototypeCall(fn, handler, ObjectFreeze(payload), env, ctx);
      }
    } catch (error) {
      print(`Uncaught ${describe(error)}`, 3);
      op_isola_fail(id, "exception", describe(error));
      return;
    }
    await settle(waitUntil);
    op_isola_event_result(id, JSONStringify(result));
  });
}

export {
  messageBatch,
  invokeEvent,
};
