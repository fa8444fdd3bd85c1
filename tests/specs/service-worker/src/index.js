// The service-worker form: no default export, a fetch listener; vars are globals.
addEventListener("fetch", (event) => {
  const path = new URL(event.request.url).pathname;
  if (path === "/async") {
    event.waitUntil(Promise.resolve());
    event.respondWith((async () => new Response(`async ${GREETING}`))());
  } else if (path === "/twice") {
    event.respondWith(new Response("first"));
    try {
      event.respondWith(new Response("second"));
    } catch (e) {
      console.log(`second respondWith: ${e.name}`);
    }
  } else if (path === "/none") {
    // No respondWith: the request fails like an exception.
  } else {
    event.passThroughOnException();
    event.respondWith(
      Response.json({
        greeting: GREETING,
        isEvent: event instanceof Event,
        type: event.type,
        method: event.request.method,
      }),
    );
  }
});
