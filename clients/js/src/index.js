// The query side of an inference-free SPLADE model: query text -> weighted tokens -> a search body
// for OpenSearch or Elasticsearch, exactly as the Python `splade_os.query.QueryEncoder` builds it.
// The steps (the Python `splade_os.query.pack` docstring; docs/apps.md):
//   1. refuse text that is not valid Unicode (an unpaired surrogate);
//   2. token ids = the tokenizer's encoding without special tokens, the first `max_length`;
//   3. each distinct id once;
//   4. weight = table[id] as float32, ids of weight 0 dropped (negative weights kept);
//   5. key = token with "%" -> "%25", then "." -> "%2E";
//   6. body: positive weights, highest first, ties by token id, at most `maxClauses` clauses.

import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";

import { Tokenizer } from "@huggingface/tokenizers";

import { bertNormalizer, bertPreTokenize } from "./bert.js";

export const QUERY_SIDE_FILE = "query-side.json";
export const QUERY_SIDE_INDEX = "splade-query-sides";
export const ENGINES = Object.freeze(["opensearch", "elasticsearch"]);
export const DEFAULT_FIELD = "splade";
export const DEFAULT_MAX_CLAUSES = 1024; // indices.query.bool.max_clause_count's default

/** An input splade-os refuses (bad text, a file that is not a query side, an index it did not make). */
export class QuerySideError extends Error {
  name = "QuerySideError";
}

/** A feature key: "%" -> "%25", then "." -> "%2E" (OpenSearch splits a rank_feature field at its last dot). */
export function escapeKey(token) {
  if (!token.includes("%") && !token.includes(".")) return token;
  return token.replaceAll("%", "%25").replaceAll(".", "%2E");
}

/** Where `text` is not valid Unicode, as a message, or null. */
function unpairedSurrogate(text) {
  if (typeof text.isWellFormed === "function" ? text.isWellFormed() : !LONE_SURROGATE.test(text)) return null;
  const index = text.search(LONE_SURROGATE);
  const unit = text.charCodeAt(index).toString(16).padStart(4, "0");
  const character = [...text.slice(0, index)].length; // in code points, as the Python side counts
  return `query text holds an unpaired surrogate (\\u${unit} at character ${character}), not valid Unicode`;
}
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A plain own property, even for the key "__proto__". */
function put(object, key, value) {
  if (key === "__proto__") Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  else object[key] = value;
}

function bad(where, why) {
  return new QuerySideError(`${where}: not a splade-os query side (${why})`);
}

/** The query side of one model: its tokenizer, its weight table and its truncation length. */
export class QuerySide {
  /** @type {Tokenizer} */ #tokenizer;
  /** @type {Float32Array} */ #table;
  /** @type {string[]} */ #keys;
  #seen; // Uint32Array: the query number that last saw each id (distinct ids without a Set)
  #query = 0;

  /**
   * A query side from its JSON document (a parsed `query-side.json`, or the `_source` of its
   * document in the `splade-query-sides` index).
   * @param {object} document
   * @param {{where?: string, hash?: string}} [options] where: names the source in messages;
   *   hash: the model hash the document must have (an index's `_meta.splade_os.model.hash`).
   */
  constructor(document, { where = "the query side", hash } = {}) {
    if (!document || typeof document !== "object" || Array.isArray(document)) throw bad(where, "not a JSON object");
    for (const [field, type] of [["tokenizer_json", "string"], ["query_table", "string"]]) {
      if (typeof document[field] !== type) throw bad(where, `no "${field}" ${type}`);
    }
    const maxLength = document.max_length ?? null;
    if (maxLength !== null && !(Number.isInteger(maxLength) && maxLength > 0)) {
      throw bad(where, `"max_length" is ${JSON.stringify(maxLength)}, not a positive whole number or null`);
    }
    if (hash !== undefined && document.hash !== hash) {
      throw new QuerySideError(`${where}: is the query side of model ${document.hash ?? "(no hash)"}, not of ${hash}`);
    }
    let json;
    try {
      json = JSON.parse(document.tokenizer_json);
      this.#tokenizer = new Tokenizer(json, {});
    } catch (e) {
      throw bad(where, `its tokenizer_json cannot be read: ${String(e.message ?? e).split("\n")[0]}`);
    }
    exactBert(this.#tokenizer, json, where);

    const vocab = this.#tokenizer.model.vocab;
    const tokens = Array.from(vocab, (token, id) => {
      if (typeof token !== "string") throw bad(where, `token ids are not contiguous (no token ${id})`);
      return token;
    });
    const bytes = Buffer.from(document.query_table, "base64");
    if (bytes.length % 4 !== 0) throw bad(where, "query_table is not base64 of float32 values");
    const count = bytes.length / 4;
    if (count > tokens.length) throw bad(where, `query_table has ${count} weights but the vocabulary has ${tokens.length} tokens`);
    const table = new Float32Array(tokens.length); // a short table is padded with zeros, as in Python
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let i = 0; i < count; i++) {
      table[i] = view.getFloat32(i * 4, true);
      if (!Number.isFinite(table[i])) throw bad(where, `query_table holds ${table[i]} for token id ${i}`);
    }
    if (typeof document.hash === "string" && document.hash) {
      // sha256 of the vocabulary in id order and the table: the model's query identity (Python's
      // `vocabulary_hash`). Equal hashes also prove this side reads the same token strings.
      const digest = createHash("sha256").update(tokens.join("\n"), "utf8").update(Buffer.from([0]))
        .update(bytes).update(Buffer.alloc((tokens.length - count) * 4)); // the table, padded
      if (digest.digest("hex") !== document.hash) {
        throw bad(where, "its tokenizer and table do not give its hash: corrupted, edited, or a tokenizer this port reads differently");
      }
    }
    /** The model's hash (`_id` in `splade-query-sides`), name and truncation length. */
    this.hash = document.hash ?? "";
    this.name = document.name ?? "";
    this.maxLength = maxLength;
    this.#table = table;
    this.#keys = tokens.map(escapeKey);
    this.#seen = new Uint32Array(tokens.length);
  }

  /**
   * Load a `query-side.json`, or a folder holding one (a conformance pack, a model export).
   * @param {string} path
   * @returns {Promise<QuerySide>}
   */
  static async fromFile(path) {
    let file = path;
    try {
      if ((await stat(path)).isDirectory()) file = join(path, QUERY_SIDE_FILE);
    } catch (e) {
      throw new QuerySideError(`${path}: ${e.code === "ENOENT" ? "no such file or folder" : e.message}`);
    }
    let text;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      if (e.code === "ENOENT") throw new QuerySideError(`${path}: holds no ${QUERY_SIDE_FILE} (not a splade-os query side)`);
      throw new QuerySideError(`${file}: ${e.message}`);
    }
    let document;
    try {
      document = JSON.parse(text);
    } catch (e) {
      throw bad(file, `not JSON: ${e.message}`);
    }
    return new QuerySide(document, { where: file });
  }

  /**
   * The query side and field of a cluster index made by splade-os. `get(path)` performs a GET
   * request on the cluster and resolves to the parsed JSON answer; it is called with
   * `/<index>/_mapping` and then `/splade-query-sides/_doc/<hash>`.
   * @param {string} index
   * @param {(path: string) => Promise<any>} get
   * @returns {Promise<{side: QuerySide, field: string, hash: string}>}
   */
  static async fromCluster(index, get) {
    const { hash, field } = indexModel(await get(`/${encodeURIComponent(index)}/_mapping`), index);
    const answer = await get(`/${QUERY_SIDE_INDEX}/_doc/${encodeURIComponent(hash)}`);
    if (!answer || answer.found === false || !answer._source) {
      throw new QuerySideError(`index ${JSON.stringify(index)}: no query side stored for its model ${hash} in ${QUERY_SIDE_INDEX}`);
    }
    return { side: new QuerySide(answer._source, { where: `${QUERY_SIDE_INDEX}/${hash}`, hash }), field, hash };
  }

  /**
   * The query's token ids: the tokenizer's, without special tokens, the first `maxLength`.
   * @param {string} text
   * @returns {number[]}
   */
  ids(text) {
    if (typeof text !== "string") throw new TypeError(`query text must be a string, not ${text === null ? "null" : typeof text}`);
    const problem = unpairedSurrogate(text);
    if (problem) throw new QuerySideError(problem);
    const ids = this.#tokenizer.encode(text, { add_special_tokens: false }).ids;
    if (this.maxLength !== null && ids.length > this.maxLength) ids.length = this.maxLength;
    return ids;
  }

  /** [id, weight] of each distinct token of non-zero weight, in the order they come. */
  #weights(text) {
    const ids = this.ids(text);
    const table = this.#table, seen = this.#seen;
    if (++this.#query === 0xffffffff) { seen.fill(0); this.#query = 1; }
    const query = this.#query;
    const out = [];
    for (const id of ids) {
      if (seen[id] === query) continue;
      seen[id] = query;
      const weight = table[id];
      if (weight !== 0) out.push([id, weight]);
    }
    return out;
  }

  /**
   * {escaped feature key: weight} for a query: each distinct token once, weights of 0 dropped,
   * negative weights kept (they are the model's; a search body leaves them out).
   * @param {string} text
   * @returns {Record<string, number>}
   */
  features(text) {
    const keys = this.#keys;
    const out = {};
    for (const [id, weight] of this.#weights(text)) put(out, keys[id], weight);
    return out;
  }

  /**
   * The search body of a query for the official OpenSearch or Elasticsearch client (`body` of
   * `client.search`, or its fields spread into the request on the Elasticsearch 8 client).
   * @param {string} text
   * @param {{engine: "opensearch"|"elasticsearch", field?: string, size?: number, maxClauses?: number}} options
   */
  body(text, { engine, field = DEFAULT_FIELD, size = 10, maxClauses = DEFAULT_MAX_CLAUSES } = {}) {
    const name = typeof engine === "string" ? engine.toLowerCase() : engine;
    if (!ENGINES.includes(name)) throw new QuerySideError(`engine ${JSON.stringify(engine)}: expected one of ${ENGINES.join(", ")}`);
    if (typeof field !== "string" || !field) throw new QuerySideError(`field ${JSON.stringify(field)}: expected the name of the SPLADE field`);
    if (!Number.isInteger(size) || size < 0) throw new QuerySideError(`size ${JSON.stringify(size)}: expected a whole number >= 0`);
    if (!Number.isInteger(maxClauses) || maxClauses < 1) throw new QuerySideError(`maxClauses ${JSON.stringify(maxClauses)}: expected a whole number >= 1`);
    const terms = this.#weights(text).filter(([, weight]) => weight > 0);
    terms.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    if (terms.length > maxClauses) terms.length = maxClauses;
    const keys = this.#keys;
    let query;
    if (terms.length === 0) {
      query = { match_none: {} }; // a bool with no clause would match every document
    } else if (name === "opensearch") {
      query = { bool: { should: terms.map(([id, weight]) => ({ rank_feature: { field: `${field}.${keys[id]}`, boost: weight, linear: {} } })) } };
    } else {
      query = { bool: { should: terms.map(([id, weight]) => ({ term: { [field]: { value: keys[id], boost: weight } } })) } };
    }
    return { size, track_total_hits: false, query };
  }
}

/**
 * The model hash and SPLADE field an index's mapping records (`GET /<index>/_mapping`'s answer);
 * an alias over several indexes must name one model and one field.
 * @param {object} mapping
 * @param {string} [index] for messages
 * @returns {{hash: string, field: string}}
 */
export function indexModel(mapping, index = "the index") {
  const name = JSON.stringify(index);
  const metas = Object.values(mapping && typeof mapping === "object" ? mapping : {})
    .map((body) => body?.mappings?._meta?.splade_os)
    .filter((meta) => meta && typeof meta === "object");
  if (metas.length === 0) throw new QuerySideError(`index ${name} was not created by splade-os (no splade_os entry in its _meta)`);
  const found = new Set(metas.map((meta) => `${meta.model?.hash}\n${meta.field}`));
  if (found.size > 1) throw new QuerySideError(`index ${name}: its indexes were made with different models or fields`);
  const { model, field } = metas[0];
  if (typeof model?.hash !== "string" || !model.hash) throw new QuerySideError(`index ${name}: its _meta.splade_os names no model hash`);
  return { hash: model.hash, field: typeof field === "string" && field ? field : DEFAULT_FIELD };
}

/** Put the Rust library's BERT normaliser and pre-tokenizer in place of the library's (src/bert.js). */
function exactBert(tokenizer, json, where) {
  for (const token of json.added_tokens ?? []) {
    if (token.single_word) {
      throw bad(where, `its added token ${JSON.stringify(token.content)} is single_word, which @huggingface/tokenizers does not match as the Rust library does`);
    }
  }
  if (json.normalizer?.type === "BertNormalizer") {
    const normalize = bertNormalizer(json.normalizer);
    for (const token of json.added_tokens ?? []) {
      // The library matched these after its own normaliser; they must read the same with this one.
      if ((token.normalized ?? !token.special) && normalize(token.content) !== tokenizer.normalizer(token.content)) {
        throw bad(where, `its added token ${JSON.stringify(token.content)} normalises differently here`);
      }
    }
    tokenizer.normalizer = normalize;
  }
  if (json.pre_tokenizer?.type === "BertPreTokenizer") tokenizer.pre_tokenizer = bertPreTokenize;
  if (json.model?.type === "WordPiece") cacheWords(tokenizer.model);
}

/** WordPiece splits each word on its own: remember the pieces of the words it has seen. */
function cacheWords(model, limit = 1 << 16) {
  const encode = model.encode.bind(model);
  const cache = new Map();
  model.encode = (words) => {
    const out = [];
    for (const word of words) {
      let pieces = cache.get(word);
      if (pieces === undefined) {
        pieces = encode([word]);
        if (cache.size >= limit) cache.clear();
        cache.set(word, pieces);
      }
      for (const piece of pieces) out.push(piece);
    }
    return out;
  };
}
