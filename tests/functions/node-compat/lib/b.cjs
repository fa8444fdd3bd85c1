const a = require("./a.cjs");
exports.name = "b";
exports.sawA = { name: a.name, loaded: a.loaded };
