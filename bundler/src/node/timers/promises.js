// node:timers/promises.
function aborted(signal) {
  const error = new Error("The operation was aborted");
  error.name = "AbortError";
  error.code = "ABORT_ERR";
  error.cause = signal?.reason;
  return error;
}

export function setTimeout(delay, value, options) {
  const signal = options?.signal;
  if (signal?.aborted) return Promise.reject(aborted(signal));
  return new Promise((resolve, reject) => {
    const id = globalThis.setTimeout(() => resolve(value), delay);
    signal?.addEventListener("abort", () => {
      globalThis.clearTimeout(id);
      reject(aborted(signal));
    }, { once: true });
  });
}

export function setImmediate(value, options) {
  return setTimeout(0, value, options);
}

export async function* setInterval(delay, value, options) {
  while (true) {
    yield await setTimeout(delay, value, options);
  }
}

export const scheduler = {
  wait: (delay, options) => setTimeout(delay, undefined, options),
  yield: () => setImmediate(),
};
export default { setTimeout, setImmediate, setInterval, scheduler };
