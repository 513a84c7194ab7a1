package io.spladeos.query;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The rules one by one (escapes, repeats, negative and zero weights, ties, caps, truncation) and
 * the refusals, on the tiny test pack: no model needed.
 */
class QuerySideTest {
    static Path pack;
    static ObjectNode document;
    static QuerySide side;

    @BeforeAll
    static void load() throws Exception {
        pack = Packs.tiny();
        document = (ObjectNode) Json.MAPPER.readTree(pack.resolve(QuerySide.FILE).toFile());
        side = QuerySide.load(pack);
    }

    @AfterAll
    static void close() {
        if (side != null) {
            side.close();
        }
    }

    /** The pack's query side with some weights replaced (and no hash: it would no longer match). */
    static QuerySide withWeights(Map<Integer, Float> changes, Integer maxLength) {
        ObjectNode copy = document.deepCopy();
        byte[] bytes = Base64.getDecoder().decode(copy.path("query_table").asText());
        ByteBuffer table = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        changes.forEach((id, weight) -> table.putFloat(id * Float.BYTES, weight));
        copy.put("query_table", Base64.getEncoder().encodeToString(bytes));
        copy.remove("hash");
        if (maxLength != null) {
            copy.put("max_length", maxLength);
        }
        return QuerySide.fromJson(copy.toString());
    }

    static int id(String token) {
        int[] ids = side.tokenIds(token);
        assertEquals(1, ids.length, token);
        return ids[0];
    }

    @Test
    void keysAreEscapedReversibly() {
        assertEquals("lift", QuerySide.escapeKey("lift"));
        assertEquals("%2E", QuerySide.escapeKey("."));
        assertEquals("##%2E%2E", QuerySide.escapeKey("##.."));
        assertEquals("%25", QuerySide.escapeKey("%"));
        assertEquals("%252E", QuerySide.escapeKey("%2E")); // "%" first, so no two tokens share a key
        assertEquals(Map.of("3", 0.05f, "%2E", 0.5f, "5", 0.05f, "%25", 0.625f), side.features("3.5%"));
    }

    @Test
    void bertStyleQueriesTakeTheCachedWordPath() {
        assertTrue(side.fastPath(), "a BERT-style tokenizer: its ASCII queries skip the full encoding");
        for (String text : List.of("what is lift?", "  C++ vs C# .NET 3.5 a.b.c\t(50%)\n", "[MASK] is [sep]", "")) {
            assertArrayEquals(side.libraryTokenIds(text), side.tokenIds(text), text);
        }
    }

    @Test
    void aRepeatedTokenCountsOnce() {
        assertEquals(side.features("lift"), side.features("lift lift LIFT"));
        assertEquals(3, side.tokenIds("lift lift LIFT").length);
        assertEquals(Map.of("lift", 3.0f), side.features("lift lift LIFT"));
    }

    @Test
    void negativeWeightsStayInTheFeaturesButNeverReachTheBody() {
        Map<String, Float> features = side.features("the wings of the air");
        assertEquals(Map.of("the", -0.75f, "wing", 3.0f, "##s", 0.1f, "of", -0.125f, "air", 0.05f), features);
        String tinyBody = Json.MAPPER.valueToTree(side.body("the of", "opensearch")).toString();
        assertEquals("{\"size\":10,\"track_total_hits\":false,\"query\":{\"match_none\":{}}}", tinyBody);
        int what = id("what"), is = id("is"), lift = id("lift");
        try (QuerySide signed = withWeights(Map.of(what, -2.5f, is, 0f, lift, 1.25f), null)) {
            Map<String, Float> signedFeatures = signed.features("what is lift?");
            assertEquals(-2.5f, signedFeatures.get("what"));
            assertFalse(signedFeatures.containsKey("is"), "a zero weight is dropped");
            assertEquals(1.25f, signedFeatures.get("lift"));
            String body = Json.MAPPER.valueToTree(signed.body("what is lift?", "opensearch")).toString();
            assertFalse(body.contains("splade.what"), body);
            assertTrue(body.contains("\"splade.lift\""), body);
        }
    }

    @Test
    void clausesAreHeaviestFirstTiesByTokenIdAndCapped() {
        int drag = id("drag"), lift = id("lift"), wing = id("wing");
        try (QuerySide tied = withWeights(Map.of(drag, 3f, lift, 3f, wing, 3f), null)) {
            int[] sorted = {drag, lift, wing};
            java.util.Arrays.sort(sorted);
            JsonNode body = Json.MAPPER.valueToTree(tied.body("wing lift drag", "elasticsearch", "f", 5, 2));
            JsonNode should = body.path("query").path("bool").path("should");
            assertEquals(2, should.size());
            for (int i = 0; i < 2; i++) {
                String key = should.get(i).path("term").path("f").path("value").asText();
                assertEquals(sorted[i], id(key), "ties are broken by token id");
                assertEquals(3.0, should.get(i).path("term").path("f").path("boost").asDouble());
            }
            assertEquals(5, body.path("size").asInt());
            assertFalse(body.path("track_total_hits").asBoolean(true));
        }
    }

    @Test
    void aQueryWithNoTermMatchesNothing() {
        for (String engine : List.of("opensearch", "elasticsearch")) {
            assertEquals(Map.of("size", 10, "track_total_hits", false, "query", Map.of("match_none", Map.of())),
                    side.body("", engine));
            assertEquals(Map.of("size", 3, "track_total_hits", false, "query", Map.of("match_none", Map.of())),
                    side.body("lift", engine, "splade", 3, 0));
        }
        assertTrue(side.features(" \t ").isEmpty());
    }

    @Test
    void theBodyShapesAreTheEnginesOwn() {
        Map<String, Object> os = side.body("lift", "OpenSearch", "sp", 7, 1024);
        float weight = 3.0f;
        assertEquals(Map.of("size", 7, "track_total_hits", false, "query", Map.of("bool", Map.of("should", List.of(
                Map.of("rank_feature", Map.of("field", "sp.lift", "boost", (double) weight, "linear", Map.of())))))), os);
        Map<String, Object> es = side.body("lift", "elasticsearch", "sp", 7, 1024);
        assertEquals(Map.of("size", 7, "track_total_hits", false, "query", Map.of("bool", Map.of("should", List.of(
                Map.of("term", Map.of("sp", Map.of("value", "lift", "boost", (double) weight))))))), es);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> side.body("lift", "solr"));
        assertEquals("engine 'solr': expected one of opensearch, elasticsearch", e.getMessage());
    }

    @Test
    void tokenIdsAreCutAtMaxLength() {
        assertEquals(12, side.maxLength());
        assertEquals(12, side.tokenIds("a b c a b c a b c a b c a b c").length);
        try (QuerySide short2 = withWeights(Map.of(), 2)) {
            assertArrayEquals(java.util.Arrays.copyOf(side.tokenIds("what is lift?"), 2), short2.tokenIds("what is lift?"));
            assertEquals(2, short2.maxLength());
        }
    }

    @Test
    void unpairedSurrogatesAreRefusedInOneLine() {
        for (String text : List.of("a\ud800", "\udc00b", "lift \ud83d", "\ud83d\ude00\ud800")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> side.features(text));
            assertTrue(e.getMessage().startsWith("query text holds an unpaired surrogate"), e.getMessage());
            assertFalse(e.getMessage().contains("\n"));
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> side.tokenIds("\ud83d\ude00\ud800")); // positions count code points, as Python does
        assertEquals("query text holds an unpaired surrogate (\\ud800 at character 1), not valid Unicode "
                + "(bytes that are not UTF-8?)", e.getMessage());
        assertFalse(side.features("lift \ud83d\ude00").isEmpty()); // a pair is fine
    }

    @Test
    void whatIsNotAQuerySideIsRefusedInOneLine(@TempDir Path dir) throws Exception {
        QuerySideException e = assertThrows(QuerySideException.class, () -> QuerySide.load(dir));
        assertTrue(e.getMessage().contains("no query side here"), e.getMessage());
        Files.writeString(dir.resolve(QuerySide.FILE), "{\"name\": \"not a query side\"}");
        e = assertThrows(QuerySideException.class, () -> QuerySide.load(dir));
        assertTrue(e.getMessage().endsWith("not a splade-os query side (no \"tokenizer_json\" text)"), e.getMessage());
        Files.writeString(dir.resolve(QuerySide.FILE), "[1, 2");
        e = assertThrows(QuerySideException.class, () -> QuerySide.load(dir.resolve(QuerySide.FILE)));
        assertTrue(e.getMessage().contains("is not JSON"), e.getMessage());

        ObjectNode damaged = document.deepCopy();
        String table = damaged.path("query_table").asText();
        int at = table.length() / 2 / 4 * 4; // one whole base64 group in the middle
        damaged.put("query_table", table.substring(0, at) + (table.startsWith("AAAA", at) ? "AACA" : "AAAA")
                + table.substring(at + 4));
        e = assertThrows(QuerySideException.class, () -> QuerySide.fromJson(damaged.toString()));
        assertTrue(e.getMessage().contains("hash does not match"), e.getMessage());
        ObjectNode badTokenizer = document.deepCopy();
        badTokenizer.put("tokenizer_json", "{\"model\": {\"type\": \"Nope\", \"vocab\": {\"a\": 0}}}");
        badTokenizer.remove("hash");
        badTokenizer.put("query_table", "AAAAAA==".substring(0, 8));
        e = assertThrows(QuerySideException.class, () -> QuerySide.fromJson(badTokenizer.toString()));
        assertTrue(e.getMessage().contains("cannot be loaded by the tokenizers library"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
    }

    @Test
    void theQuerySideIsFoundFromAnIndexMapping() throws Exception {
        String hash = side.hash();
        String mapping = "{\"docs-v2\": {\"mappings\": {\"_meta\": {\"splade_os\": {\"field\": \"sv\", "
                + "\"model\": {\"hash\": \"" + hash + "\"}}}, \"properties\": {\"sv\": {\"type\": \"sparse_vector\"}}}}}";
        assertEquals(new SpladeIndex("docs-v2", hash, "sv", Engine.ELASTICSEARCH), SpladeIndex.fromMapping(mapping));
        String doc = "{\"_index\": \"splade-query-sides\", \"_id\": \"" + hash + "\", \"found\": true, \"_source\": "
                + document + "}";
        Map<String, String> cluster = Map.of("/docs/_mapping", mapping, "/splade-query-sides/_doc/" + hash, doc);
        try (QuerySide fromCluster = QuerySide.fromCluster(path -> cluster.get(path), "docs")) {
            assertEquals("sv", fromCluster.field());
            assertEquals(side.features("what is lift?"), fromCluster.features("what is lift?"));
            assertTrue(fromCluster.body("lift", "elasticsearch").toString().contains("{term={sv={value=lift"));
        }
        try (QuerySide fromSource = QuerySide.fromDocument(document.toString())) {
            assertEquals(hash, fromSource.hash());
        }
        QuerySideException e = assertThrows(QuerySideException.class, () -> SpladeIndex.fromMapping(
                "{\"app\": {\"mappings\": {\"properties\": {\"title\": {\"type\": \"text\"}}}}}"));
        assertEquals("not an index made by splade-os (no splade_os entry in its _meta)", e.getMessage());
        e = assertThrows(QuerySideException.class, () -> QuerySide.fromDocument(
                "{\"_index\": \"splade-query-sides\", \"_id\": \"abc\", \"found\": false}"));
        assertEquals("the query side abc is not stored in splade-query-sides", e.getMessage());
    }

    @Test
    void oneQuerySideServesManyThreads() throws Exception {
        List<String> texts = new ArrayList<>();
        Path big = Packs.all().get(0);
        for (JsonNode record : Packs.records(Packs.present(big) ? big : pack)) {
            if (!record.has("error")) {
                texts.add(record.path("text").asText());
            }
        }
        List<Map<String, Float>> expected = new ArrayList<>();
        for (String text : texts) {
            expected.add(side.weigh(side.libraryTokenIds(text)).features());
        }
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try {
            List<Future<Boolean>> runs = new ArrayList<>();
            for (int t = 0; t < 8; t++) {
                int offset = t;
                runs.add(pool.submit(() -> {
                    for (int round = 0; round < 5; round++) {
                        for (int i = 0; i < texts.size(); i++) {
                            int k = (i + offset * 37) % texts.size();
                            if (!expected.get(k).equals(side.features(texts.get(k)))) {
                                return false;
                            }
                        }
                    }
                    return true;
                }));
            }
            for (Future<Boolean> run : runs) {
                assertTrue(run.get());
            }
        } finally {
            pool.shutdown();
        }
    }
}
