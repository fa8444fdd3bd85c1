// Runs forever on every request: the node kills it at its CPU limit each time.
export default {
  fetch() {
    while (true) {}
  },
};
