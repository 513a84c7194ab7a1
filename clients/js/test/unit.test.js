// The rules on a tiny hand-made query side (no pack needed): weights, keys, clause order and
// caps, truncation, refused input, loading from files and from a cluster, and the runner.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { QuerySide, QuerySideError, escapeKey, indexModel } from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const TOKENS = [...SPECIAL, "a", "b", "c", ".", "%", "neg", "zero", "##s", "tie", "##σ", "##ς"];
const WEIGHTS = [0, 0, 0, 0, 0, 1.5, 2.5, 0.1, 0.25, 0.5, -1.25, 0, 3, 2.5, 4, 5];

function tokenizerJson({ addedExtra = {} } = {}) {
  return JSON.stringify({
    version: "1.0", truncation: null, padding: null,
    added_tokens: SPECIAL.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...addedExtra })),
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: null,
    decoder: null,
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100,
      vocab: Object.fromEntries(TOKENS.map((token, id) => [token, id])) },
  });
}

function document({ weights = WEIGHTS, maxLength = 512, hash = true, ...rest } = {}) {
  const table = Buffer.from(new Float32Array(weights).buffer);
  const doc = { name: "tiny", tokenizer_json: tokenizerJson(rest), query_table: table.toString("base64"), max_length: maxLength };
  if (hash) {
    const padded = Buffer.alloc(TOKENS.length * 4);
    table.copy(padded);
    doc.hash = createHash("sha256").update(TOKENS.join("\n")).update(Buffer.from([0])).update(padded).digest("hex");
  }
  return doc;
}

const side = new QuerySide(document());

test("features: distinct tokens once, zero weights dropped, negative kept, float32 weights", () => {
  assert.deepEqual(side.features("a b A neg zero b"), { a: 1.5, b: 2.5, neg: -1.25 });
  assert.deepEqual(side.features("c"), { c: Math.fround(0.1) });
  assert.deepEqual(side.features(""), {});
});

test("keys: '%' -> '%25', then '.' -> '%2E'", () => {
  assert.deepEqual(side.features("a.%"), { a: 1.5, "%2E": 0.25, "%25": 0.5 });
  assert.equal(escapeKey("%2E."), "%252E%2E");
  assert.equal(escapeKey("lift"), "lift");
});

test("a capital sigma lower-cases to σ as in the Rust library (not a final ς)", () => {
  assert.deepEqual(side.ids("AΣ"), [5, 14]); // @huggingface/tokenizers alone: [5, 15]
  assert.deepEqual(side.features("aΣ aσ"), { a: 1.5, "##σ": 4 });
});

test("OpenSearch body: positive weights, highest first, ties by token id, capped", () => {
  const should = (body) => body.query.bool.should.map((c) => [c.rank_feature.field, c.rank_feature.boost]);
  const body = side.body("a tie neg b", { engine: "opensearch" });
  assert.deepEqual(Object.keys(body), ["size", "track_total_hits", "query"]);
  assert.equal(body.size, 10);
  assert.equal(body.track_total_hits, false);
  assert.deepEqual(should(body), [["splade.b", 2.5], ["splade.tie", 2.5], ["splade.a", 1.5]]);
  assert.deepEqual(body.query.bool.should[0].rank_feature.linear, {});
  assert.deepEqual(should(side.body("a tie b", { engine: "opensearch", field: "f", maxClauses: 2 })), [["f.b", 2.5], ["f.tie", 2.5]]);
});

test("Elasticsearch body: boosted term clauses on the field", () => {
  assert.deepEqual(side.body("b .", { engine: "Elasticsearch", field: "sp", size: 3 }), {
    size: 3, track_total_hits: false,
    query: { bool: { should: [{ term: { sp: { value: "b", boost: 2.5 } } }, { term: { sp: { value: "%2E", boost: 0.25 } } }] } },
  });
});

test("no positive weight: match_none, never an empty bool that matches everything", () => {
  for (const engine of ["opensearch", "elasticsearch"]) {
    assert.deepEqual(side.body("neg zero", { engine }), { size: 10, track_total_hits: false, query: { match_none: {} } });
    assert.deepEqual(side.body("", { engine }).query, { match_none: {} });
  }
});

test("truncation: the first max_length token ids", () => {
  const short = new QuerySide(document({ maxLength: 2 }));
  assert.deepEqual(short.ids("a b c"), [5, 6]);
  assert.deepEqual(new QuerySide(document({ maxLength: null })).ids("a b c a"), [5, 6, 7, 5]);
});

test("text that is not valid Unicode is refused with one line", () => {
  assert.throws(() => side.features("lone \ud800 x"), {
    name: "QuerySideError", message: "query text holds an unpaired surrogate (\\ud800 at character 5), not valid Unicode" });
  assert.throws(() => side.body("😀\udfff", { engine: "opensearch" }), /\\udfff at character 1\)/);
  assert.throws(() => side.features("\udbff"), QuerySideError);
  assert.deepEqual(side.features("a 😀"), { a: 1.5 }); // a pair is fine ([UNK] has weight 0)
  assert.throws(() => side.features(undefined), TypeError);
});

test("bad body options are refused", () => {
  assert.throws(() => side.body("a", { engine: "solr" }), /engine "solr": expected one of opensearch, elasticsearch/);
  assert.throws(() => side.body("a", {}), QuerySideError);
  assert.throws(() => side.body("a", { engine: "opensearch", maxClauses: 0 }), /maxClauses/);
  assert.throws(() => side.body("a", { engine: "opensearch", size: -1 }), /size/);
  assert.throws(() => side.body("a", { engine: "opensearch", field: "" }), /field/);
});

test("the table: a short one padded with zeros; a long or non-finite one refused; the hash checked", () => {
  const short = new QuerySide(document({ weights: WEIGHTS.slice(0, 7), hash: false }));
  assert.deepEqual(short.features("a b c"), { a: 1.5, b: 2.5 });
  assert.throws(() => new QuerySide(document({ weights: [...WEIGHTS, 1] })), /query_table has 17 weights but the vocabulary has 16 tokens/);
  assert.throws(() => new QuerySide(document({ weights: [NaN, ...WEIGHTS.slice(1)], hash: false })), /NaN/);
  assert.throws(() => new QuerySide({ ...document(), hash: "0".repeat(64) }), /do not give its hash/);
  assert.throws(() => new QuerySide(document(), { hash: "abc" }), /is the query side of model .*, not of abc/);
});

test("what is not a query side gets one clear line", async () => {
  const dir = mkdtempSync(join(tmpdir(), "splade-os-js-"));
  writeFileSync(join(dir, "not-json.json"), "{ nope");
  writeFileSync(join(dir, "other.json"), JSON.stringify({ hello: 1 }));
  writeFileSync(join(dir, "bad-tok.json"), JSON.stringify({ tokenizer_json: "{", query_table: "" }));
  const oneLine = (pattern) => (e) => e instanceof QuerySideError && !e.message.includes("\n") && pattern.test(e.message);
  await assert.rejects(QuerySide.fromFile(join(dir, "missing")), oneLine(/missing: no such file or folder$/));
  await assert.rejects(QuerySide.fromFile(dir), oneLine(/holds no query-side\.json/));
  await assert.rejects(QuerySide.fromFile(join(dir, "not-json.json")), oneLine(/not a splade-os query side \(not JSON/));
  await assert.rejects(QuerySide.fromFile(join(dir, "other.json")), oneLine(/not a splade-os query side \(no "tokenizer_json" string\)/));
  await assert.rejects(QuerySide.fromFile(join(dir, "bad-tok.json")), oneLine(/its tokenizer_json cannot be read/));
  assert.throws(() => new QuerySide(document({ addedExtra: { single_word: true } })), oneLine(/single_word/));
  assert.throws(() => new QuerySide([]), oneLine(/not a JSON object/));
});

test("from a folder or a file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "splade-os-js-"));
  writeFileSync(join(dir, "query-side.json"), JSON.stringify(document()));
  assert.deepEqual((await QuerySide.fromFile(dir)).features("b"), { b: 2.5 });
  assert.equal((await QuerySide.fromFile(join(dir, "query-side.json"))).name, "tiny");
});

const mapping = (meta) => ({ docs: { mappings: { _meta: meta, properties: {} } } });

test("indexModel reads the model hash and field of a splade-os index", () => {
  const meta = { splade_os: { field: "sp", model: { hash: "h1", name: "m" } } };
  assert.deepEqual(indexModel(mapping(meta), "docs"), { hash: "h1", field: "sp" });
  assert.throws(() => indexModel(mapping({ app: 1 }), "docs"), /index "docs" was not created by splade-os/);
  assert.throws(() => indexModel({}, "docs"), /not created by splade-os/);
  const alias = { ...mapping(meta), other: { mappings: { _meta: { splade_os: { field: "sp", model: { hash: "h2" } } } } } };
  assert.throws(() => indexModel(alias, "docs"), /different models or fields/);
});

test("fromCluster: the mapping's _meta names the side; the side's document is read by hash", async () => {
  const doc = document();
  const answers = {
    "/docs/_mapping": mapping({ splade_os: { field: "sp", model: { hash: doc.hash } } }),
    [`/splade-query-sides/_doc/${doc.hash}`]: { _index: "splade-query-sides", _id: doc.hash, found: true, _source: doc },
  };
  const asked = [];
  const get = async (path) => { asked.push(path); return answers[path] ?? { found: false }; };
  const { side: fromCluster, field, hash } = await QuerySide.fromCluster("docs", get);
  assert.deepEqual([field, hash, asked.length], ["sp", doc.hash, 2]);
  assert.deepEqual(fromCluster.body("b", { engine: "elasticsearch", field }).query.bool.should, [{ term: { sp: { value: "b", boost: 2.5 } } }]);
  answers["/docs/_mapping"] = mapping({ splade_os: { field: "sp", model: { hash: "f".repeat(64) } } });
  await assert.rejects(QuerySide.fromCluster("docs", get), /no query side stored for its model f+ in splade-query-sides/);
});

test("the runner answers each JSON line, and refuses bad lines with one error line", () => {
  const dir = mkdtempSync(join(tmpdir(), "splade-os-js-"));
  mkdirSync(join(dir, "pack"));
  writeFileSync(join(dir, "pack", "query-side.json"), JSON.stringify(document()));
  const input = ['{"text": "a b"}', '{"text": "lone \\ud800"}', "not json", '{"txt": 1}', "",
    '{"text": "a tie b", "max_clauses": 1, "size": 2, "field": "f"}'].join("\n") + "\n";
  const run = spawnSync(process.execPath, [join(here, "../bin/query-port.mjs"), "--side", join(dir, "pack")], { input, encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split("\n").map((line) => JSON.parse(line));
  assert.equal(lines.length, 5);
  assert.deepEqual(lines[0].features, { a: 1.5, b: 2.5 });
  assert.deepEqual(lines[0].bodies.opensearch, side.body("a b", { engine: "opensearch" }));
  assert.deepEqual(lines[0].bodies.elasticsearch, side.body("a b", { engine: "elasticsearch" }));
  assert.match(lines[1].error, /^query text holds an unpaired surrogate \(\\ud800 at character 5\), not valid Unicode$/);
  assert.match(lines[2].error, /^not a JSON line/);
  assert.equal(lines[3].error, 'expected a JSON object with a "text" string');
  assert.deepEqual(lines[4].bodies.opensearch, { size: 2, track_total_hits: false, query: { bool: { should: [
    { rank_feature: { field: "f.b", boost: 2.5, linear: {} } }] } } });
  const bad = spawnSync(process.execPath, [join(here, "../bin/query-port.mjs"), "--side", dir], { input: "", encoding: "utf8" });
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr.trim().split("\n").length, 1);
  assert.match(bad.stderr, /holds no query-side\.json/);
});

/** The runner's exit status, stdout and stderr (without blocking this process, which serves the cluster). */
function runPort(args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, "../bin/query-port.mjs"), ...args]);
    let stdout = "", stderr = "";
    child.stdout.on("data", (chunk) => { stdout += chunk; });
    child.stderr.on("data", (chunk) => { stderr += chunk; });
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(input);
  });
}

test("the runner reads the query side of an index from the cluster (--url, --index), or refuses in one line", async () => {
  const doc = document();
  const answers = {
    "/docs/_mapping": [200, mapping({ splade_os: { field: "sp", model: { hash: doc.hash } } })],
    [`/splade-query-sides/_doc/${doc.hash}`]: [200, { _index: "splade-query-sides", _id: doc.hash, found: true, _source: doc }],
    "/plain/_mapping": [200, { plain: { mappings: {} } }],
    "/gone/_mapping": [200, mapping({ splade_os: { field: "sp", model: { hash: "f".repeat(64) } } })],
    "/locked/_mapping": [401, { error: { type: "security_exception", reason: "unable to authenticate user [u]" }, status: 401 }],
  };
  const seen = {};
  const server = createServer((request, response) => {
    seen[request.url] = request.headers.authorization;
    const [status, body] = answers[request.url]
      ?? [404, { error: { type: "index_not_found_exception", reason: "no such index" }, status: 404 }];
    response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  const url = `http://u:p%40ss@127.0.0.1:${port}/`;
  const shown = `http://u:***@127.0.0.1:${port}`;
  try {
    const run = await runPort(["--url", url, "--index", "docs"], '{"text": "a b"}\n{"text": "a b", "field": "f"}\n');
    assert.equal(run.status, 0, run.stderr);
    assert.equal(seen["/docs/_mapping"], `Basic ${Buffer.from("u:p@ss").toString("base64")}`);
    const [first, second] = run.stdout.trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(first.features, { a: 1.5, b: 2.5 });
    assert.deepEqual(first.bodies.elasticsearch, side.body("a b", { engine: "elasticsearch", field: "sp" })); // the index's field
    assert.deepEqual(second.bodies.opensearch, side.body("a b", { engine: "opensearch", field: "f" }));
    const refusals = {
      nosuch: `index "nosuch" at ${shown}: no such index`,
      plain: `index "plain" at ${shown} was not created by splade-os (no splade_os entry in its _meta)`,
      gone: `index "gone" at ${shown}: no query side stored for its model ${"f".repeat(64)} in splade-query-sides`,
      locked: `${shown}: GET /locked/_mapping answered HTTP 401 (unable to authenticate user [u])`,
    };
    for (const [index, message] of Object.entries(refusals)) {
      const refused = await runPort(["--url", url, "--index", index], '{"text": "a"}\n');
      assert.deepEqual([refused.status, refused.stdout, refused.stderr], [1, "", `query-port: ${message}\n`]);
    }
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  const unreachable = await runPort(["--url", url, "--index", "docs"], "");
  assert.equal(unreachable.status, 1);
  assert.match(unreachable.stderr, new RegExp(`^query-port: cannot reach ${shown.replace(/[.*]/g, "\\$&")} \\(connection refused\\)\n$`));
  for (const args of [["--url", "ftp://u:secret@h", "--index", "i"], ["--url", "http://u:secret@[x", "--index", "i"], ["--url", url],
    ["--index", "i"], ["--side", "p", "--url", url, "--index", "i"], ["--url", url, "--index", "a/b"]]) {
    const usage = await runPort(args, "");
    assert.equal(usage.status, 2, usage.stderr);
    assert.equal(usage.stderr.trim().split("\n").length, 1, usage.stderr);
    assert.doesNotMatch(usage.stderr, /secret|p%40ss/);
  }
});
