// ESLint flat config. Type-aware rules from typescript-eslint for every .ts file (the project service
// finds each file's tsconfig); plain JavaScript (.js/.mjs/.cjs) gets the untyped rules only.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['dist/', 'coverage/', 'bench/.build/', 'bench/results/', 'test-output/', 'test/fixtures/', 'docs/api/', '**/*.api.md'],
  },
  {
    // The Angular example is a project of its own: its TypeScript is type-checked by the Angular CLI
    // against its own node_modules (strict templates included), which exist only once
    // test/angular-app.test.ts has installed them. Its backend (server.mjs) is linted here.
    ignores: [
      'examples/angular-app/**/*.ts',
      'examples/angular-app/node_modules/',
      'examples/angular-app/dist/',
      'examples/angular-app/.angular/',
    ],
  },
  js.configs.recommended,
  // `recommendedTypeChecked`, not `strictTypeChecked`: the strict set adds about a thousand reports
  // here, nearly all style (numbers in template literals, `!` after lookups the code has just checked,
  // `() => void` shorthands) rather than bugs.
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: { ...globals.node },
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: {
      reportUnusedDisableDirectives: 'error',
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      // With `verbatimModuleSyntax`, `import { type A } from 'x'` still loads 'x': all-type imports
      // must be `import type`.
      '@typescript-eslint/no-import-type-side-effects': 'error',
      // Destructuring a property out under an `_` name (`const { help: _help, ...flags } = values`)
      // is how this code drops a field from the rest object; an `_` argument is deliberately unused.
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // `let subscription; … subscription = source.subscribe(…)` is deliberate: callbacks that can run
      // during `subscribe()` read the variable, and a `const` would throw there (temporal dead zone).
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // `async` without `await` is deliberate: it implements Promise-returning interfaces (a peer's
      // `start`/`close`, async generators standing in for response bodies) so that a synchronous
      // throw becomes a rejection, as callers expect.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      // Node 20's V8 gives every object made by a literal that starts with a spread and goes on
      // (`{ ...event, requestId }`) a hidden class of its own once the code is optimised: about
      // 0.6 µs and a map per object, and whatever reads those objects turns megamorphic. The same
      // object made by `Object.assign({}, event, { requestId })`, or by a literal that starts with
      // a field, shares one hidden class per shape.
      'no-restricted-syntax': [
        'error',
        {
          selector: 'ObjectExpression[properties.length>1] > SpreadElement:first-child',
          message:
            'a literal that starts with a spread and goes on makes a hidden class per object on Node 20: use withFields(source, fields) from src/core/objects.ts (Object.assign({}, ...) for an object the library made), or put a field first',
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'marbles/**/*.ts'],
    rules: {
      // vitest's asymmetric matchers (`expect.objectContaining`, `expect.any`, `expect.stringContaining`)
      // are typed `any`, and tests put them in expected objects everywhere.
      '@typescript-eslint/no-unsafe-assignment': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
