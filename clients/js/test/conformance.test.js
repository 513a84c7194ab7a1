// The whole conformance pack, exactly: same ids, same feature keys, weights equal as float32,
// bodies equal as JSON values (numbers compared as float32); refused texts must throw.
// The pack: $SPLADE_OS_PACK, else ../../build/pack-default (from clients/js); write one with
// `splade-os query-side pack -o DIR`.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { QuerySide, QuerySideError } from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const pack = resolve(process.env.SPLADE_OS_PACK ?? join(here, "../../../build/pack-default"));
const conformance = join(pack, "conformance.jsonl");
const missing = existsSync(conformance) ? false
  : `no conformance pack at ${pack} (set SPLADE_OS_PACK, or write one with \`splade-os query-side pack -o DIR\`)`;
const records = () => readFileSync(conformance, "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line));

/** Where two JSON values differ (numbers as float32), or null. */
function difference(got, want, path = "$") {
  if (typeof want === "number") {
    return typeof got === "number" && Math.fround(got) === Math.fround(want) ? null : `${path}: ${got} != ${want}`;
  }
  if (Array.isArray(want)) {
    if (!Array.isArray(got)) return `${path}: not an array`;
    if (got.length !== want.length) return `${path}: ${got.length} items, want ${want.length}`;
    for (let i = 0; i < want.length; i++) {
      const found = difference(got[i], want[i], `${path}[${i}]`);
      if (found) return found;
    }
    return null;
  }
  if (want && typeof want === "object") {
    if (!got || typeof got !== "object" || Array.isArray(got)) return `${path}: not an object`;
    const keys = Object.keys(want).sort(), gotKeys = Object.keys(got).sort();
    if (JSON.stringify(keys) !== JSON.stringify(gotKeys)) {
      return `${path}: keys ${JSON.stringify(gotKeys).slice(0, 300)}, want ${JSON.stringify(keys).slice(0, 300)}`;
    }
    for (const key of keys) {
      const found = difference(got[key], want[key], `${path}.${key}`);
      if (found) return found;
    }
    return null;
  }
  return Object.is(got, want) ? null : `${path}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`;
}

test("every query of the conformance pack, exactly", { skip: missing }, async (t) => {
  const side = await QuerySide.fromFile(pack);
  const failures = [];
  let checked = 0, refused = 0;
  for (const record of records()) {
    const text = JSON.stringify(record.text).slice(0, 80);
    if ("error" in record) {
      refused++;
      assert.throws(() => side.features(record.text), QuerySideError, `${text} must be refused`);
      assert.throws(() => side.body(record.text, { engine: "opensearch" }), QuerySideError);
      try {
        side.ids(record.text);
      } catch (e) {
        assert.ok(record.error.startsWith(e.message), `${text}: ${e.message} (Python: ${record.error})`);
      }
      continue;
    }
    checked++;
    const options = { field: record.field, size: record.size, maxClauses: record.max_clauses };
    const found = difference(side.ids(record.text), record.ids, "ids")
      ?? difference(side.features(record.text), record.features, "features")
      ?? difference(side.body(record.text, { ...options, engine: "opensearch" }), record.bodies.opensearch, "opensearch")
      ?? difference(side.body(record.text, { ...options, engine: "elasticsearch" }), record.bodies.elasticsearch, "elasticsearch");
    if (found) failures.push(`${text}: ${found}`);
  }
  assert.ok(checked > 0, "the pack holds no query");
  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${checked} queries differ`);
  t.diagnostic(`${checked} queries exact, ${refused} texts refused as they must be (${pack})`);
});

test("where @huggingface/tokenizers alone differs from the Rust library", { skip: missing }, async (t) => {
  const side = await QuerySide.fromFile(pack);
  const json = JSON.parse(JSON.parse(readFileSync(join(pack, "query-side.json"), "utf8")).tokenizer_json);
  const [head, ...cases] = readFileSync(join(here, "rust-cases.jsonl"), "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line));
  const vocab = Object.entries(json.model.vocab).sort((a, b) => a[1] - b[1]).map(([token]) => token).join("\n");
  if (createHash("sha256").update(vocab).digest("hex") !== head.vocab_sha256 || difference(json.normalizer, head.normalizer)) {
    return t.skip("the pack's tokenizer is not the one these ids were taken from");
  }
  for (const { text, ids } of cases) assert.deepEqual(side.ids(text), ids, JSON.stringify(text));
});
