#!/usr/bin/env node
// The JavaScript query side answering JSON lines (the protocol of scripts/query-port):
//   node bin/query-port.mjs --side PATH      PATH: a query-side.json or a folder holding one
// In:  {"text": ..., "max_clauses"?: 1024, "size"?: 10, "field"?: "splade"} per line.
// Out: {"features": {key: weight}, "bodies": {"opensearch": ..., "elasticsearch": ...}} per line,
//      or {"error": "one line"} for a line it refuses.
import { createInterface } from "node:readline";

import { DEFAULT_FIELD, DEFAULT_MAX_CLAUSES, ENGINES, QuerySide, QuerySideError } from "../src/index.js";

const USAGE = "usage: query-port --side PATH (a query-side.json or a folder holding one)";

function sidePath(args) {
  let path = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else if (arg === "--side" || arg === "--model") {
      path = args[++i] ?? null;
    } else if (arg.startsWith("--side=") || arg.startsWith("--model=")) {
      path = arg.slice(arg.indexOf("=") + 1);
    } else {
      return fail(`query-port: unknown argument ${arg}\n${USAGE}`);
    }
  }
  return path || fail(USAGE);
}

function fail(message) {
  console.error(message);
  process.exit(2);
}

function answer(side, line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    return { error: `not a JSON line (${e.message})` };
  }
  const text = request && typeof request === "object" ? request.text : undefined;
  if (typeof text !== "string") return { error: 'expected a JSON object with a "text" string' };
  const options = {
    field: request.field ?? DEFAULT_FIELD,
    size: request.size ?? 10,
    maxClauses: request.max_clauses ?? DEFAULT_MAX_CLAUSES,
  };
  try {
    const features = side.features(text);
    const bodies = {};
    for (const engine of ENGINES) bodies[engine] = side.body(text, { ...options, engine });
    return { features, bodies };
  } catch (e) {
    if (e instanceof QuerySideError) return { error: e.message };
    return { error: `internal error: ${String(e?.message ?? e).split("\n")[0]}` };
  }
}

const path = sidePath(process.argv.slice(2));
let side;
try {
  side = await QuerySide.fromFile(path);
} catch (e) {
  fail(`query-port: ${e instanceof QuerySideError ? e.message : String(e?.message ?? e).split("\n")[0]}`);
}
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim()) process.stdout.write(JSON.stringify(answer(side, line)) + "\n");
}
