package io.spladeos.query;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/** Where the conformance packs are: -Dpack=DIR[:DIR...], else $SPLADE_OS_PACK, else ../../build/pack-default. */
final class Packs {
    static final String DEFAULT = "../../build/pack-default";
    private static final String HOW = " (write one with `splade-os query-side pack -o DIR`, "
            + "then run mvn test -Dpack=DIR or set SPLADE_OS_PACK)";

    private Packs() {}

    static List<Path> all() {
        String given = System.getProperty("pack", "");
        if (given.isBlank()) {
            given = System.getenv().getOrDefault("SPLADE_OS_PACK", "");
        }
        if (given.isBlank()) {
            given = DEFAULT;
        }
        List<Path> packs = new ArrayList<>();
        for (String part : given.split(File.pathSeparator)) {
            if (!part.isBlank()) {
                packs.add(Path.of(part).toAbsolutePath().normalize());
            }
        }
        return packs;
    }

    /**
     * The tiny pack in the test resources (a 60-token BERT-style tokenizer with negative, zero and
     * tied weights; written by tiny/make.py): the rules are tested on it without any model.
     */
    static Path tiny() {
        try {
            return Path.of(Packs.class.getResource("/tiny/pack/" + QuerySide.FILE).toURI()).getParent();
        } catch (java.net.URISyntaxException | NullPointerException e) {
            throw new IllegalStateException("the tiny test pack is missing from the test resources", e);
        }
    }

    /** The first configured pack; the calling test is skipped, saying why, when it is missing. */
    static Path first() {
        Path pack = all().get(0);
        assumeTrue(present(pack), missing(pack));
        return pack;
    }

    static boolean present(Path pack) {
        return Files.isRegularFile(pack.resolve("conformance.jsonl")) && Files.isRegularFile(pack.resolve(QuerySide.FILE));
    }

    static String missing(Path pack) {
        return "no conformance pack at " + pack + HOW;
    }

    static List<JsonNode> records(Path pack) throws IOException {
        List<JsonNode> records = new ArrayList<>();
        for (String line : Files.readAllLines(pack.resolve("conformance.jsonl"), StandardCharsets.UTF_8)) {
            if (!line.isBlank()) {
                records.add(Json.MAPPER.readTree(line));
            }
        }
        return records;
    }

    /**
     * Whether two JSON values are equal with every number read as a float32 (how weights and boosts
     * are compared across languages); objects regardless of key order, arrays in order.
     */
    static boolean sameAsFloat32(JsonNode a, JsonNode b) {
        if (a.isNumber() && b.isNumber()) {
            return (float) a.doubleValue() == (float) b.doubleValue();
        }
        if (a.isObject() && b.isObject()) {
            if (a.size() != b.size()) {
                return false;
            }
            for (Iterator<String> names = a.fieldNames(); names.hasNext(); ) {
                String name = names.next();
                if (!b.has(name) || !sameAsFloat32(a.get(name), b.get(name))) {
                    return false;
                }
            }
            return true;
        }
        if (a.isArray() && b.isArray()) {
            if (a.size() != b.size()) {
                return false;
            }
            for (int i = 0; i < a.size(); i++) {
                if (!sameAsFloat32(a.get(i), b.get(i))) {
                    return false;
                }
            }
            return true;
        }
        return a.equals(b);
    }
}
