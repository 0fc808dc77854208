/// <reference path="./other.d.ts" />
/// <reference types="node" />
declare module 'ambient-not-an-import' {
  export function f(): void;
}
import type { A } from './a';
export type { B } from './b';
export { default } from './default-reexport';
export * as ns from './ns-reexport';
type C = typeof import('./typeof-import');
