// Per-query translation time (features + the OpenSearch body) over a conformance pack's texts,
// after a warm-up; prints JSON. `first_seen`: the same on a fresh query side whose word cache is
// empty (every word of every query seen for the first time; the code itself already warm).
//   node bench.mjs [PACK]   (default: $SPLADE_OS_PACK, else ../../build/pack-default)
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { QuerySide } from "./src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const pack = resolve(process.argv[2] ?? process.env.SPLADE_OS_PACK ?? join(here, "../../build/pack-default"));
const started = performance.now();
const side = await QuerySide.fromFile(pack);
const loadMs = performance.now() - started;
const texts = readFileSync(join(pack, "conformance.jsonl"), "utf8").split("\n").filter(Boolean)
  .map((line) => JSON.parse(line)).filter((record) => !("error" in record)).map((record) => record.text);

function measure(on, rounds) {
  const times = [];
  for (let round = 0; round < rounds; round++) {
    for (const text of texts) {
      const start = process.hrtime.bigint();
      on.features(text);
      on.body(text, { engine: "opensearch" });
      times.push(Number(process.hrtime.bigint() - start) / 1000);
    }
  }
  times.sort((a, b) => a - b);
  const at = (q) => +times[Math.min(times.length - 1, Math.floor(q * times.length))].toFixed(1);
  return { translations: times.length, p50_us: at(0.5), p99_us: at(0.99), mean_us: +(times.reduce((a, b) => a + b, 0) / times.length).toFixed(1) };
}

measure(side, 5); // warm-up
const warm = measure(side, 20);
const first = measure(await QuerySide.fromFile(pack), 1);
console.log(JSON.stringify({ node: process.version, queries: texts.length, load_ms: +loadMs.toFixed(1), ...warm, first_seen: first }));
