// ESLint flat config: typescript-eslint's recommended rules for a Node.js library, plus the
// type-aware promise rules (an unawaited promise in a Node library is a lost error).
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

// The Node.js globals the plain-JavaScript files (scripts/, this file) use.
const nodeGlobals = Object.fromEntries(
  [
    'Buffer',
    'URL',
    '__dirname',
    '__filename',
    'clearImmediate',
    'clearInterval',
    'clearTimeout',
    'console',
    'exports',
    'module',
    'process',
    'require',
    'setImmediate',
    'setInterval',
    'setTimeout',
  ].map((name) => [name, 'readonly']),
);

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'build/',
      'build-sanitize/',
      'prebuilds/',
      'node_modules/',
      'docs/api/',
      'bench/results/',
      'native/',
    ],
  },
  eslint.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: nodeGlobals },
    rules: {
      // `_`-prefixed names are deliberately unused (e.g. `const { type: _type, ...rest } = m`).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Type-aware rules need the TypeScript program: only the files tsconfig.json compiles.
    files: ['lib/**/*.ts', 'lib/**/*.mts', 'spec/**/*.ts', 'examples/**/*.ts', 'bench/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  {
    // The global Buffer is a getter (node:internal/bootstrap/node): each use in a per-message
    // path cost a global inline-cache miss and a call, a tenth of a 64 B sender's time.
    files: ['lib/**/*.ts', 'lib/**/*.mts'],
    rules: {
      'no-restricted-globals': [
        'error',
        { name: 'Buffer', message: "import { Buffer } from 'node:buffer' (the global is a getter, slow per message)" },
      ],
    },
  },
  {
    // CommonJS scripts run by npm (scripts/prebuild.js).
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
