// The JSON handler every server of the efficiency bench runs: an order POSTed as about 1 KB of
// JSON, read with `request.json()`, totalled, answered with `Response.json`.
export default {
  async fetch(request) {
    const order = await request.json();
    let total = 0;
    for (const item of order.items) total += item.price * item.quantity;
    return Response.json({ id: order.id, items: order.items.length, total });
  },
};
