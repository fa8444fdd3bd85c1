function explode() {
  throw new Error("the widget exploded");
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/reject") {
      return Promise.reject(new TypeError("rejected on purpose"));
    }
    if (url.pathname === "/not-a-response") {
      return { hello: "world" };
    }
    console.log("about to explode");
    explode();
  },
};
