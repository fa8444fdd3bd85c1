"use strict";
const data = require("./data.json");
const self = this;
function area(r) {
  return Math.round(Math.PI * r * r);
}
module.exports = { area, sides: data.sides, thisIsExports: self === module.exports, file: typeof __filename };
module.exports.dynamic = (name) => require("./" + name);
module.exports.missing = () => {
  try {
    require("./" + "nowhere");
    return "found";
  } catch (error) {
    return error.code;
  }
};
