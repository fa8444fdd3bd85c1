// CommonJS requiring CommonJS that requires the built-ins by their bare names.
const { EventEmitter } = require("events");
const path = require("path");
const { format } = require("util");
module.exports = { emitter: typeof EventEmitter, joined: path.join("/a", "../b", "c.txt"), formatted: format("%s=%d", "n", 42) };
