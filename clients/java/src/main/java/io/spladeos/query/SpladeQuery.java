package io.spladeos.query;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One query's weighted tokens ({@link QuerySide#query(String)}): its features, and its search body
 * for either engine, without tokenizing again.
 */
public final class SpladeQuery {
    private final String[] keys; // by token id (the query side's, shared)
    private final int[] ids; // distinct token ids with a non-zero weight, ascending
    private final float[] weights; // their weights

    SpladeQuery(String[] keys, int[] ids, float[] weights) {
        this.keys = keys;
        this.ids = ids;
        this.weights = weights;
    }

    /** {escaped key: weight}: every distinct token with a non-zero weight, negative ones included, in token id order. */
    public Map<String, Float> features() {
        Map<String, Float> features = new LinkedHashMap<>(ids.length * 2);
        for (int i = 0; i < ids.length; i++) {
            features.put(keys[ids[i]], weights[i]);
        }
        return features;
    }

    /** {token id: weight}, as {@link #features()} but by id. */
    public Map<Integer, Float> weights() {
        Map<Integer, Float> out = new LinkedHashMap<>(ids.length * 2);
        for (int i = 0; i < ids.length; i++) {
            out.put(ids[i], weights[i]);
        }
        return out;
    }

    /**
     * The search body: {@code {"size", "track_total_hits": false, "query"}}, the query being the
     * engine's feature query on {@code field} over the positive weights, highest first (ties by
     * token id), at most {@code maxClauses} of them; {@code {"match_none": {}}} when none is left.
     * Mutable maps and lists, in the Python side's key order; each boost is the float32 weight
     * widened to a double.
     *
     * @throws IllegalArgumentException {@code size} or {@code maxClauses} negative, or {@code field} empty
     */
    public Map<String, Object> body(Engine engine, String field, int size, int maxClauses) {
        if (field == null || field.isEmpty()) {
            throw new IllegalArgumentException("the SPLADE field name is empty");
        }
        if (size < 0 || maxClauses < 0) {
            throw new IllegalArgumentException("size and max_clauses must not be negative (got " + size + ", "
                    + maxClauses + ")");
        }
        // One long per positive weight, sorting as (weight descending, id ascending): the bits of a
        // positive float grow with its value, so MAX - bits in the high half sorts the heaviest first.
        long[] order = new long[ids.length];
        int positive = 0;
        for (int i = 0; i < ids.length; i++) {
            if (weights[i] > 0) {
                order[positive++] = ((long) (Integer.MAX_VALUE - Float.floatToIntBits(weights[i])) << 32) | ids[i];
            }
        }
        Arrays.sort(order, 0, positive);
        int count = Math.min(positive, maxClauses);
        String[] termKeys = new String[count];
        float[] termWeights = new float[count];
        for (int i = 0; i < count; i++) {
            int id = (int) order[i];
            termKeys[i] = keys[id];
            termWeights[i] = Float.intBitsToFloat(Integer.MAX_VALUE - (int) (order[i] >>> 32));
        }
        Map<String, Object> body = new LinkedHashMap<>(4);
        body.put("size", size);
        body.put("track_total_hits", false); // exact counts would stop Lucene skipping blocks by impact
        body.put("query", engine.featureQuery(termKeys, termWeights, count, field));
        return body;
    }

    /** {@link #body(Engine, String, int, int)} for the engine named "opensearch" or "elasticsearch". */
    public Map<String, Object> body(String engine, String field, int size, int maxClauses) {
        return body(Engine.named(engine), field, size, maxClauses);
    }

    /** The number of distinct tokens with a non-zero weight. */
    public int size() {
        return ids.length;
    }
}
