const a = require("./ok");
// invalid: ÿşı
const re = x / 2; const b = require("./after-division");
const str = "unterminated
const c = require("./after-unterminated");
const t = `unterminated template require("./never")