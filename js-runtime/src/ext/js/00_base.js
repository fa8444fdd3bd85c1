// What every part of Isola's runtime shares: deno_core's bootstrap, the ops, Deno's Web API
// modules and a few property-descriptor helpers.

const { core, internals, primordials } = globalThis.__bootstrap;

// The ops, bound by `bindOps`: here, while the snapshot is made (the ops' slow versions, all
// a snapshot can hold), and again on every isolate made from it, to their fast-call versions
// (`prepare` in runtime.js). Exported bindings are live: the other modules see the rebound ops.
export let op_isola_log, op_isola_next, op_isola_take, op_isola_read, op_isola_header;
export let op_isola_respond, op_isola_respond_text, op_isola_respond_stream, op_isola_write;
export let op_isola_fail, op_isola_done, op_isola_event_blob, op_isola_event_result;
export let op_isola_binding, op_isola_live, op_isola_charge, op_isola_mark, op_isola_client_gone;
export let op_isola_outbound_span, op_isola_brotli_open, op_isola_brotli_push;
export let op_isola_brotli_more, op_isola_brotli_ended, op_isola_brotli_close;

function bindOps() {
  ({
    op_isola_log,
    op_isola_next,
    op_isola_take,
    op_isola_read,
    op_isola_header,
    op_isola_respond,
    op_isola_respond_text,
    op_isola_respond_stream,
    op_isola_write,
    op_isola_fail,
    op_isola_done,
    op_isola_event_blob,
    op_isola_event_result,
    op_isola_binding,
    op_isola_live,
    op_isola_charge,
    op_isola_mark,
    op_isola_client_gone,
    op_isola_outbound_span,
    op_isola_brotli_open,
    op_isola_brotli_push,
    op_isola_brotli_more,
    op_isola_brotli_ended,
    op_isola_brotli_close,
  } = core.ops);
}
bindOps();

const load = core.loadExtScript;

// deno_fetch traces through Deno's OpenTelemetry modules when they are loaded; tracing of
// outbound fetch is off here, so it gets inert stand-ins instead.
const noop = () => {};
internals.__telemetry = {
  TRACING_ENABLED: false,
  PROPAGATORS: [],
  DID_NOT_ENTER: {},
  builtinTracer: noop,
  ContextManager: { active: noop },
  enterSpan: noop,
  exitSpan: noop,
};
internals.__telemetryUtil = {
  updateSpanFromClientResponse: noop,
  updateSpanFromError: noop,
  updateSpanFromRequest: noop,
};
const webidl = load("ext:deno_webidl/00_webidl.js");
const url = load("ext:deno_web/00_url.js");
const urlPattern = load("ext:deno_web/01_urlpattern.js");
const consoleMod = load("ext:deno_web/01_console.js");
const domException = load("ext:deno_web/01_dom_exception.js");
const event = load("ext:deno_web/02_event.js");
const structuredCloneMod = load("ext:deno_web/02_structured_clone.js");
const messagePort = load("ext:deno_web/13_message_port.js");
const timers = load("ext:deno_web/02_timers.js");
const abortSignal = load("ext:deno_web/03_abort_signal.js");
const globalInterfaces = load("ext:deno_web/04_global_interfaces.js");
const base64 = load("ext:deno_web/05_base64.js");
const streams = load("ext:deno_web/06_streams.js");
const encoding = load("ext:deno_web/08_text_encoding.js");
const file = load("ext:deno_web/09_file.js");
const compression = load("ext:deno_web/14_compression.js");
const performanceMod = load("ext:deno_web/15_performance.js");
const cryptoMod = load("ext:deno_crypto/00_crypto.js");
const headers = load("ext:deno_fetch/20_headers.js");
const formData = load("ext:deno_fetch/21_formdata.js");
const body = load("ext:deno_fetch/22_body.js");
const request = load("ext:deno_fetch/23_request.js");
const response = load("ext:deno_fetch/23_response.js");
const fetchMod = load("ext:deno_fetch/26_fetch.js");

function nonEnumerable(value) {
  return { __proto__: null, value, writable: true, enumerable: false, configurable: true };
}
function getter(get) {
  return { __proto__: null, get, enumerable: true, configurable: true };
}
function readOnly(value) {
  return { __proto__: null, value, writable: false, enumerable: true, configurable: true };
}

export {
  core,
  internals,
  primordials,
  bindOps,
  webidl,
  url,
  urlPattern,
  consoleMod,
  domException,
  event,
  structuredCloneMod,
  messagePort,
  timers,
  abortSignal,
  globalInterfaces,
  base64,
  streams,
  encoding,
  file,
  compression,
  performanceMod,
  cryptoMod,
  headers,
  formData,
  body,
  request,
  response,
  fetchMod,
  nonEnumerable,
  getter,
  readOnly,
  noop,
  load,
};
