package io.spladeos.query;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Per-query translation time, warm, one query at a time as an app sends them: the pack's texts,
 * warm-up passes, then measured passes of features + the OpenSearch body per text. Prints JSON.
 *
 * <pre>java -cp splade-os-query.jar io.spladeos.query.Bench --side PACK [--warmup 30] [--rounds 50]</pre>
 */
public final class Bench {
    private Bench() {}

    public static void main(String[] args) throws IOException {
        Path sidePath = Path.of("../../build/pack-default");
        int warmup = 30;
        int rounds = 50;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--side" -> sidePath = Path.of(args[i + 1]);
                case "--warmup" -> warmup = Integer.parseInt(args[i + 1]);
                case "--rounds" -> rounds = Integer.parseInt(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown argument " + args[i]);
            }
        }
        Path folder = Files.isDirectory(sidePath) ? sidePath : sidePath.toAbsolutePath().getParent();
        List<String> texts = new ArrayList<>();
        for (String line : Files.readAllLines(folder.resolve("conformance.jsonl"), StandardCharsets.UTF_8)) {
            JsonNode record = Json.MAPPER.readTree(line);
            if (!record.has("error")) {
                texts.add(record.path("text").asText());
            }
        }
        long loadStart = System.nanoTime();
        try (QuerySide side = QuerySide.load(sidePath)) {
            double loadMs = (System.nanoTime() - loadStart) / 1e6;
            long sink = 0;
            for (int r = 0; r < warmup; r++) {
                for (String text : texts) {
                    sink += translate(side, text);
                    sink += side.tokenIds(text).length;
                    sink += translateByLibrary(side, text);
                }
            }
            long[] full = new long[rounds * texts.size()];
            long[] tokenize = new long[rounds * texts.size()];
            long[] library = new long[rounds * texts.size()];
            int n = 0;
            for (int r = 0; r < rounds; r++) {
                for (String text : texts) { // the three take turns, text by text
                    long t0 = System.nanoTime();
                    sink += translate(side, text);
                    long t1 = System.nanoTime();
                    sink += side.tokenIds(text).length;
                    long t2 = System.nanoTime();
                    sink += translateByLibrary(side, text);
                    long t3 = System.nanoTime();
                    full[n] = t1 - t0;
                    tokenize[n] = t2 - t1;
                    library[n++] = t3 - t2;
                }
            }
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("what", "QuerySide.query(text) + features() + OpenSearch body, per query, warm (microseconds)");
            out.put("queries", texts.size());
            out.put("warmup_passes", warmup);
            out.put("passes", rounds);
            out.put("translation", stats(full));
            out.put("tokenize_only", stats(tokenize));
            out.put("translation_without_word_cache", stats(library));
            out.put("load_ms", Math.round(loadMs * 10) / 10.0);
            out.put("java", System.getProperty("java.vm.name") + " " + Runtime.version());
            out.put("cpu_cores", Runtime.getRuntime().availableProcessors());
            out.put("checksum", sink);
            System.out.println(Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(out));
        }
    }

    private static int translate(QuerySide side, String text) {
        SpladeQuery query = side.query(text);
        return query.features().size() + query.body(Engine.OPENSEARCH, QuerySide.DEFAULT_FIELD,
                QuerySide.DEFAULT_SIZE, QuerySide.DEFAULT_MAX_CLAUSES).size();
    }

    /** The same translation with every query through the library's full encoding (no cached word path). */
    private static int translateByLibrary(QuerySide side, String text) {
        SpladeQuery query = side.weigh(side.libraryTokenIds(text));
        return query.features().size() + query.body(Engine.OPENSEARCH, QuerySide.DEFAULT_FIELD,
                QuerySide.DEFAULT_SIZE, QuerySide.DEFAULT_MAX_CLAUSES).size();
    }

    private static Map<String, Object> stats(long[] nanos) {
        long[] sorted = nanos.clone();
        Arrays.sort(sorted);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("p50_us", micros(sorted[sorted.length / 2]));
        out.put("p99_us", micros(sorted[(int) Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]));
        out.put("mean_us", micros((long) Arrays.stream(sorted).average().orElse(0)));
        out.put("samples", sorted.length);
        return out;
    }

    private static double micros(long nanos) {
        return Math.round(nanos / 100.0) / 10.0;
    }
}
