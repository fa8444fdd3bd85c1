// Circular requires as Node resolves them: a starts, requires b; b requires a and sees a's
// exports as far as a had got.
exports.loaded = false;
exports.name = "a";
const b = require("./b.cjs");
exports.sawB = { name: b.name, sawA: b.sawA };
exports.extra = require("./extra.cjs").length;
exports.loaded = true;
