#!/usr/bin/env node
// The JavaScript query side answering JSON lines (the protocol of scripts/query-port):
//   node bin/query-port.mjs --side PATH              PATH: a query-side.json or a folder holding one
//   node bin/query-port.mjs --url URL --index NAME   the query side of a splade-os index, read from
//                                                    the cluster as an app reads it (QuerySide.fromCluster
//                                                    over Node's fetch); the index's field is the default field
// In:  {"text": ..., "max_clauses"?: 1024, "size"?: 10, "field"?: "splade"} per line.
// Out: {"features": {key: weight}, "bodies": {"opensearch": ..., "elasticsearch": ...}} per line,
//      or {"error": "one line"} for a line it refuses.
// A query side that cannot be loaded: exit 1, one line on stderr, nothing on stdout (a bad command line: exit 2).
import { createInterface } from "node:readline";

import { DEFAULT_FIELD, DEFAULT_MAX_CLAUSES, ENGINES, QUERY_SIDE_INDEX, QuerySide, QuerySideError } from "../src/index.js";

const USAGE = "usage: query-port --side PATH (a query-side.json or a folder holding one) | --url URL --index NAME (a splade-os index in that cluster)";
const SHORT_USAGE = "usage: query-port --side PATH | --url URL --index NAME";
const REQUEST_TIMEOUT_MS = 60_000; // each whole GET (a query side is a few MB at most)

function options(args) {
  const found = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    }
    const named = /^(--side|--model|--url|--index)(?:=(.*))?$/s.exec(arg);
    if (!named) return usage(`unknown argument ${arg}`);
    const key = named[1] === "--model" ? "side" : named[1].slice(2);
    const value = named[2] ?? args[++i];
    if (value === undefined) return usage(`${named[1]} needs a value`);
    found[key] = value;
  }
  if (found.side !== undefined && (found.url !== undefined || found.index !== undefined)) return usage("give --side, or --url and --index, not both");
  if (found.side !== undefined) return found.side ? found : usage("--side needs a path");
  if (found.url === undefined && found.index === undefined) return usage(null);
  if (found.url === undefined || found.index === undefined) return usage("--url and --index go together");
  if (!found.index || found.index.includes("/")) return usage(`--index: ${JSON.stringify(found.index)} is not an index name`);
  return found;
}

/** A bad command line: one line on stderr (never the --url itself: it may hold a password), exit 2. */
function usage(problem) {
  console.error(problem ? `query-port: ${problem} (${SHORT_USAGE})` : USAGE);
  process.exit(2);
}

/** Refused: one line on stderr, exit 1. */
function fail(message) {
  console.error(`query-port: ${oneLine(message)}`);
  process.exit(1);
}

const oneLine = (text) => String(text).replace(/\s*[\r\n]+\s*/g, " ").trim();

/** A failure to talk to the cluster, its message already complete. */
class ClusterError extends Error {}

/**
 * The cluster at `raw`: its base address without credentials, the address as messages show it
 * (any password as ***), and the headers of each request (user:password as basic auth).
 */
function cluster(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return usage("--url: not a URL (expected http[s]://[user:password@]host:port)"); // not echoed: it may hold a password
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return usage("--url: expected an http:// or https:// URL");
  if (url.search || url.hash) return usage("--url: the cluster's address takes no ?query or #fragment");
  const headers = { accept: "application/json" };
  let user = "";
  if (url.username || url.password) {
    user = url.username + (url.password ? ":***" : "") + "@";
    let credentials;
    try {
      credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    } catch {
      return usage("--url: its user:password is not percent-encoded properly");
    }
    headers.authorization = `Basic ${Buffer.from(credentials, "utf8").toString("base64")}`;
    url.username = "";
    url.password = "";
  }
  const path = url.pathname.replace(/\/+$/, "");
  return { base: `${url.origin}${path}`, shown: `${url.protocol}//${user}${url.host}${path}`, headers };
}

const NET_ERRORS = {
  ECONNREFUSED: "connection refused", ENOTFOUND: "host not found", EAI_AGAIN: "host not found",
  ETIMEDOUT: "connection timed out", ECONNRESET: "connection reset", EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable", UND_ERR_CONNECT_TIMEOUT: "connection timed out",
};

/** GET a cluster path with Node's fetch: the parsed JSON answer (a missing query-side document: {found: false}). */
function getter({ base, shown, headers }) {
  return async (path) => {
    let response, text;
    try {
      response = await fetch(base + path, { headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      text = await response.text();
    } catch (e) {
      const cause = e?.cause ?? e;
      const why = e?.name === "TimeoutError" ? `no answer in ${REQUEST_TIMEOUT_MS / 1000} s`
        : NET_ERRORS[cause?.code] ?? (cause?.library === "SSL routines" && cause.reason ? `TLS: ${cause.reason}` : oneLine(cause?.message ?? cause));
      throw new ClusterError(`cannot reach ${shown} (${why})`);
    }
    let answer;
    try {
      answer = JSON.parse(text);
    } catch {
      answer = undefined;
    }
    if (response.ok) {
      if (answer === undefined) throw new ClusterError(`${shown}: GET ${path} answered HTTP ${response.status} with no JSON (is this OpenSearch or Elasticsearch?)`);
      return answer;
    }
    const error = answer?.error;
    if (response.status === 404 && path.startsWith(`/${QUERY_SIDE_INDEX}/_doc/`)) {
      return { ...answer, found: false }; // the document, or its whole index, is missing: not stored
    }
    if (response.status === 404 && error?.type === "index_not_found_exception") {
      throw new ClusterError("no such index");
    }
    const reason = typeof error === "string" ? error : error?.reason ?? error?.type ?? oneLine(text).slice(0, 200);
    throw new ClusterError(`${shown}: GET ${path} answered HTTP ${response.status}${reason ? ` (${oneLine(reason)})` : ""}`);
  };
}

/** The message of a failure to load `index`'s query side, naming the index and the cluster. */
function indexMessage(index, shown, message) {
  const named = [`index ${JSON.stringify(index)}`, `index '${index}'`].find((prefix) => message.startsWith(prefix));
  if (named) return `${named} at ${shown}${message.slice(named.length)}`;
  return `index ${JSON.stringify(index)} at ${shown}: ${message}`;
}

async function load(found) {
  if (found.side !== undefined) {
    try {
      return { side: await QuerySide.fromFile(found.side), field: DEFAULT_FIELD };
    } catch (e) {
      return fail(e instanceof QuerySideError ? e.message : String(e?.message ?? e));
    }
  }
  const where = cluster(found.url);
  try {
    const { side, field } = await QuerySide.fromCluster(found.index, getter(where));
    return { side, field };
  } catch (e) {
    if (e instanceof ClusterError && e.message !== "no such index") return fail(e.message);
    return fail(indexMessage(found.index, where.shown, String(e?.message ?? e)));
  }
}

function answer(side, line, defaultField) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    return { error: `not a JSON line (${e.message})` };
  }
  const text = request && typeof request === "object" ? request.text : undefined;
  if (typeof text !== "string") return { error: 'expected a JSON object with a "text" string' };
  const options = {
    field: request.field ?? defaultField,
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

const { side, field } = await load(options(process.argv.slice(2)));
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim()) process.stdout.write(JSON.stringify(answer(side, line, field)) + "\n");
}
