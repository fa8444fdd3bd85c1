// Answers `typeof globalThis[name]` for every name posted.
export default {
  async fetch(request) {
    const names = await request.json();
    const types = {};
    for (const name of names) types[name] = typeof globalThis[name];
    return Response.json(types);
  },
};
