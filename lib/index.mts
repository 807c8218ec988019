// The ESM entry (package.json "exports" → "import"). It re-exports the CommonJS entry instead
// of importing the modules again, so an ESM and a CommonJS consumer in one process share one
// instance of every class (`instanceof ShmChannelError` holds across both) and one loaded
// addon, and the two entries cannot drift apart: whatever lib/index.ts exports, this does.
// Node finds the names with cjs-module-lexer, which reads the `Object.defineProperty(exports,
// …)` re-exports tsc emits; spec/97.package.install.spec.ts checks both entries export the
// same names.
export * from './index.js';
