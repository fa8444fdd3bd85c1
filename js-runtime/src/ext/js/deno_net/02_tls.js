// Stands in for Deno's TLS module, which deno_fetch loads for `Deno.createHttpClient` client
// certificates. Functions have no `Deno` namespace, so custom TLS clients do not exist here.
(function () {
  function loadTlsKeyPair() {
    throw new TypeError("custom TLS client certificates are not available");
  }
  return { loadTlsKeyPair };
})();
