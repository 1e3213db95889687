// ESLint (flat config) for the web console's single-page app: src/tusk/console/static.
// ./dev.sh installs ESLint, @eslint/js and globals into .venv/node (no node_modules at the
// root), and runs `eslint src/tusk/console/static` before the test suite.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

// A bare `import "@eslint/js"` would be resolved from this file's folder up, and would miss
// .venv/node/node_modules: look there too (and first beside this file, for an `npm install`
// at the root or an editor's ESLint).
async function load(name) {
  const require = createRequire(import.meta.url);
  const file = require.resolve(name, { paths: [here, path.join(here, ".venv", "node")] });
  const mod = await import(pathToFileURL(file).href);
  return mod.default ?? mod;
}

const js = await load("@eslint/js");
const globals = await load("globals");

// The console builds its DOM with createElement and textContent only: HTML parsed from strings
// is where the names of repos, branches, files and pipelines (anyone's text) would become markup.
const noHtmlSinks =
  "No HTML from strings (innerHTML, outerHTML, insertAdjacentHTML, document.write, DOMParser):" +
  " the console builds DOM with createElement and textContent only (XSS safety).";

export default [
  {
    // Third-party builds, checked in as published (vendor/VENDORED.md); and, for an `eslint .`,
    // the JavaScript that Python packages ship in the venv, and build output.
    ignores: ["src/tusk/console/static/vendor/**", ".venv/**", "build/**", "dist/**"],
  },
  js.configs.recommended,
  {
    files: ["src/tusk/console/static/**/*.js", "src/tusk/console/static/**/*.mjs"],
    languageOptions: {
      ecmaVersion: "latest",
      sourceType: "module",
      globals: {
        ...globals.browser,
        // The vendored graph libraries, loaded by classic <script> tags before the app's
        // modules (vendor/VENDORED.md).
        cytoscape: "readonly",
        cytoscapeDagre: "readonly",
        dagre: "readonly",
      },
    },
    linterOptions: {
      reportUnusedDisableDirectives: "error",
    },
    rules: {
      eqeqeq: ["error", "always"],
      "no-unused-vars": "error",
      "no-implicit-globals": "error",
      "no-eval": "error",
      "no-implied-eval": "error",
      "no-new-func": "error",
      // alert/confirm/prompt only where a line says so (a destructive action's confirm()).
      "no-alert": "error",
      "no-restricted-properties": [
        "error",
        { object: "document", property: "write", message: noHtmlSinks },
        { object: "document", property: "writeln", message: noHtmlSinks },
        { property: "insertAdjacentHTML", message: noHtmlSinks },
        { property: "createContextualFragment", message: noHtmlSinks },
        { property: "setHTMLUnsafe", message: noHtmlSinks },
      ],
      "no-restricted-syntax": [
        "error",
        {
          // el.innerHTML = …, el.outerHTML += …, el["innerHTML"] = …
          selector:
            "AssignmentExpression[left.property.name=/^(inner|outer)HTML$/]," +
            "AssignmentExpression[left.property.value=/^(inner|outer)HTML$/]",
          message: noHtmlSinks,
        },
        {
          // new DOMParser().parseFromString(…) and friends parse strings into markup too.
          selector: "NewExpression[callee.name='DOMParser']",
          message: noHtmlSinks,
        },
      ],
    },
  },
];
