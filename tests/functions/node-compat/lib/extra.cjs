module.exports = "extra, required by a computed name";
