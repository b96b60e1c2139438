#!/usr/bin/env node
// Standard-JSON front end for the pinned npm solcjs: reads the input JSON on stdin, writes the output
// JSON on stdout. Imports resolve from the repository root and node_modules. `--version` prints the
// compiler's long version. Used by `python -m pocfl.contracts.build` (see contracts/compiler.json).
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

if (process.argv.includes("--version")) {
  process.stdout.write(solc.version() + "\n");
  process.exit(0);
}

const root = path.resolve(__dirname, "..");
function findImports(importPath) {
  for (const base of [root, path.join(root, "node_modules")]) {
    const full = path.join(base, importPath);
    if (fs.existsSync(full)) return { contents: fs.readFileSync(full, "utf8") };
  }
  return { error: "File not found: " + importPath };
}

const input = fs.readFileSync(0, "utf8");
process.stdout.write(solc.compile(input, { import: findImports }));
