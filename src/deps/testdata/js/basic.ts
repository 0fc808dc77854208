#!/usr/bin/env node
import def from './default';
import { a, b as c } from "./named";
import * as ns from '../ns';
import type { T } from './types';
import './side-effect';
import json from './data.json' with { type: 'json' };
import {
  multi,
  line,
} from './multiline';
export * from './reexport-all';
export { x, y as z } from './reexport-named';
export type { U } from './reexport-type';
export const local = 1;
export { local as other };
import fs = require('fs');
const r = require('./required');
const lazy = () => import('./dynamic');
const tpl = import(`./template-dyn`);
// import trap from './line-comment';
/* import trap from './block-comment'; require('./block') */
const s = "import trap from './string'";
const t = `require('./template') ${ require('./in-template-expr') } more`;
const re = /import x from '.\/regex'/g;
const div = a / b / c;
obj.require('./method-call');
obj.import('./method-import');
/// <reference path="./globals.d.ts" />
type X = import('./type-import').Foo;
