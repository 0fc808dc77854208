import { a } from './a.mjs';
if (x) { y = /re/.test(s) } else { z = 1 }
const q = `a ${`nested ${'import("./nested-string")'}`} b`;
import { b } from './after-templates.mjs';
