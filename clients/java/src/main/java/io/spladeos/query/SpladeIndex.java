package io.spladeos.query;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Map;

/**
 * What a splade-os index records about its model in its {@code _meta}: the query side's hash
 * (the {@code _id} of its document in {@code splade-query-sides}) and the SPLADE field.
 *
 * @param index the concrete index the mapping was read from (for an alias: the first of its indexes)
 * @param hash {@code _meta.splade_os.model.hash}
 * @param field {@code _meta.splade_os.field}
 * @param engine the engine whose field type the mapping has ({@code rank_features}: OpenSearch,
 *     {@code sparse_vector}: Elasticsearch), or null when the mapping does not show it
 */
public record SpladeIndex(String index, String hash, String field, Engine engine) {

    /**
     * Reads the answer of {@code GET /<index>/_mapping} ({@code {"<index>": {"mappings": {...}}}}).
     *
     * @throws QuerySideException when no index in it was created by splade-os
     */
    public static SpladeIndex fromMapping(String mappingJson) {
        JsonNode root = Json.read(mappingJson, "the index mapping");
        for (Map.Entry<String, JsonNode> entry : root.properties()) {
            JsonNode mappings = entry.getValue().path("mappings");
            JsonNode meta = mappings.path("_meta").path("splade_os");
            if (!meta.isObject()) {
                continue;
            }
            String hash = meta.path("model").path("hash").asText("");
            String field = meta.path("field").asText("");
            if (hash.isEmpty() || field.isEmpty()) {
                throw new QuerySideException("index '" + entry.getKey()
                        + "': its _meta.splade_os names no model hash or field");
            }
            Engine engine = Engine.ofFeatureType(mappings.path("properties").path(field).path("type").asText(""));
            return new SpladeIndex(entry.getKey(), hash, field, engine);
        }
        throw new QuerySideException("not an index made by splade-os (no splade_os entry in its _meta)");
    }
}
