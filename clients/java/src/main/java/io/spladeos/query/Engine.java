package io.spladeos.query;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** The search engine a body is built for, and the feature query each one reads. */
public enum Engine {
    /** A {@code bool.should} of linear {@code rank_feature} clauses on a {@code rank_features} field. */
    OPENSEARCH("opensearch", "rank_features"),
    /** A {@code bool.should} of boosted {@code term} clauses on a {@code sparse_vector} field. */
    ELASTICSEARCH("elasticsearch", "sparse_vector");

    private final String id;
    private final String featureType;

    Engine(String id, String featureType) {
        this.id = id;
        this.featureType = featureType;
    }

    /** "opensearch" or "elasticsearch". */
    public String id() {
        return id;
    }

    /** The mapping type of the SPLADE field on this engine. */
    public String featureType() {
        return featureType;
    }

    /**
     * The engine named {@code name} ("opensearch" or "elasticsearch", any case).
     *
     * @throws IllegalArgumentException for any other name
     */
    public static Engine named(String name) {
        if (name != null) {
            String lower = name.toLowerCase(Locale.ROOT);
            for (Engine engine : values()) {
                if (engine.id.equals(lower)) {
                    return engine;
                }
            }
        }
        throw new IllegalArgumentException("engine '" + name + "': expected one of opensearch, elasticsearch");
    }

    /** The engine whose SPLADE field has mapping type {@code type}, or null. */
    static Engine ofFeatureType(String type) {
        for (Engine engine : values()) {
            if (engine.featureType.equals(type)) {
                return engine;
            }
        }
        return null;
    }

    /**
     * The clause scoring sum(weight * document feature) over {@code keys}/{@code weights} (parallel
     * arrays, {@code count} of them); no term at all matches nothing ({@code match_none}), since a
     * bool with no clause would match every document.
     */
    Map<String, Object> featureQuery(String[] keys, float[] weights, int count, String field) {
        if (count == 0) {
            return map("match_none", map());
        }
        List<Object> should = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            // The float32 weight widened to double: the value the Python side writes (parses back to the same float32).
            Double boost = (double) weights[i];
            if (this == OPENSEARCH) {
                should.add(map("rank_feature", map("field", field + "." + keys[i], "boost", boost, "linear", map())));
            } else {
                should.add(map("term", map(field, map("value", keys[i], "boost", boost))));
            }
        }
        return map("bool", map("should", should));
    }

    /** A mutable map keeping the order of {@code pairs} (key, value, key, value...). */
    static Map<String, Object> map(Object... pairs) {
        Map<String, Object> map = new LinkedHashMap<>(Math.max(2, pairs.length));
        for (int i = 0; i < pairs.length; i += 2) {
            map.put((String) pairs[i], pairs[i + 1]);
        }
        return map;
    }
}
