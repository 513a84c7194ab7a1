package io.spladeos.query;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicContainer;
import org.junit.jupiter.api.DynamicNode;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every record of the tiny test pack and of the conformance pack(s) (-Dpack=DIR[:DIR...], else
 * $SPLADE_OS_PACK, else ../../build/pack-default), exactly: the same token ids, the same feature keys with
 * weights equal as float32, bodies equal as JSON values (numbers as float32), and refusals where
 * the Python side refuses.
 */
class ConformanceTest {

    @TestFactory
    Stream<DynamicNode> everyRecordOfThePack() throws Exception {
        List<DynamicNode> packs = new ArrayList<>();
        List<Path> all = new ArrayList<>(Packs.all());
        all.add(0, Packs.tiny());
        for (Path pack : all) {
            if (!Packs.present(pack)) {
                System.err.println("SKIPPED: " + Packs.missing(pack)); // shown by mvn -q too
                packs.add(DynamicTest.dynamicTest(pack.toString(), () -> assumeTrue(false, Packs.missing(pack))));
                continue;
            }
            QuerySide side = QuerySide.load(pack);
            JsonNode document = Json.MAPPER.readTree(pack.resolve(QuerySide.FILE).toFile());
            List<JsonNode> records = Packs.records(pack);
            assertFalse(records.isEmpty(), pack + ": an empty conformance file");
            List<DynamicNode> tests = new ArrayList<>();
            tests.add(DynamicTest.dynamicTest("the query side's hash and length", () -> {
                assertEquals(document.path("hash").asText(), side.hash());
                assertEquals(document.path("max_length").asInt(0), side.maxLength());
            }));
            int number = 0;
            for (JsonNode record : records) {
                number++;
                String text = record.path("text").asText();
                String label = number + ": " + printable(text);
                tests.add(DynamicTest.dynamicTest(label, () -> check(side, record)));
            }
            packs.add(DynamicContainer.dynamicContainer(pack.toString(), tests));
        }
        return packs.stream();
    }

    private static void check(QuerySide side, JsonNode record) {
        String text = record.path("text").asText();
        if (record.has("error")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> side.features(text));
            assertEquals(record.path("error").asText(), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> side.body(text, "opensearch"));
            return;
        }
        int[] expectedIds = new int[record.path("ids").size()];
        for (int i = 0; i < expectedIds.length; i++) {
            expectedIds[i] = record.path("ids").get(i).asInt();
        }
        assertArrayEquals(expectedIds, side.tokenIds(text), "token ids");
        assertArrayEquals(expectedIds, side.libraryTokenIds(text), "token ids straight from the library");

        Map<String, Float> expected = new HashMap<>();
        record.path("features").properties().forEach(e -> expected.put(e.getKey(), (float) e.getValue().doubleValue()));
        Map<String, Float> features = side.features(text);
        assertEquals(expected.keySet(), features.keySet(), "feature keys");
        for (Map.Entry<String, Float> e : expected.entrySet()) {
            assertEquals(Float.floatToIntBits(e.getValue()), Float.floatToIntBits(features.get(e.getKey())),
                    "weight of " + e.getKey() + ": " + e.getValue() + " != " + features.get(e.getKey()));
        }

        SpladeQuery query = side.query(text);
        for (Engine engine : Engine.values()) {
            JsonNode want = record.path("bodies").path(engine.id());
            JsonNode got = Json.MAPPER.valueToTree(query.body(engine, record.path("field").asText(),
                    record.path("size").asInt(), record.path("max_clauses").asInt()));
            assertTrue(Packs.sameAsFloat32(want, got), engine.id() + " body\n want " + want + "\n got  " + got);
        }
    }

    /** A test name that shows control characters and surrogates as escapes. */
    private static String printable(String text) {
        StringBuilder out = new StringBuilder();
        text.codePoints().limit(60).forEach(c -> {
            if (Character.isISOControl(c) || Character.getType(c) == Character.SURROGATE
                    || Character.isWhitespace(c) && c != ' ') {
                out.append(String.format("\\u%04x", c));
            } else {
                out.appendCodePoint(c);
            }
        });
        return text.codePointCount(0, text.length()) > 60 ? out + "..." : out.toString();
    }
}
