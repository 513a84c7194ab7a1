package io.spladeos.query;

import ai.djl.engine.EngineException;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * The query side of an inference-free SPLADE model: a tokenizer and a static weight table that
 * turn query text into weighted tokens and into an OpenSearch or Elasticsearch search body. No
 * neural network runs.
 *
 * <p>A query is built in six steps, the same as the Python side's ({@code splade_os.query.pack}):
 * refuse text that is not valid Unicode; token ids = the tokenizer's encoding without special
 * tokens, the first {@code max_length}; each distinct id once; its weight = table[id] as float32,
 * zero weights dropped (negative ones kept in the features); its key = the token with "%" ->
 * "%25", then "." -> "%2E"; the body: positive weights only, highest first, ties by token id, at
 * most {@code maxClauses} clauses, {@code match_none} when no term is left.
 *
 * <p>Load one per model and share it: loading parses the tokenizer (tens of milliseconds), a query
 * takes microseconds, and an instance is safe to use from many threads. {@link #close()} frees the
 * native tokenizer.
 */
public final class QuerySide implements AutoCloseable {
    /** The file name of a query side on disk. */
    public static final String FILE = "query-side.json";
    /** The index holding every model's query side in the cluster, {@code _id} = the model's hash. */
    public static final String QUERY_SIDES_INDEX = "splade-query-sides";
    public static final String DEFAULT_FIELD = "splade";
    public static final int DEFAULT_SIZE = 10;
    /** {@code indices.query.bool.max_clause_count}'s default. */
    public static final int DEFAULT_MAX_CLAUSES = 1024;

    /** Reads the JSON at a cluster path ("/index/_mapping"), with the app's own client. */
    @FunctionalInterface
    public interface JsonFetcher {
        String get(String path) throws IOException;
    }

    static {
        DjlDefaults.apply();
    }

    private final String hash;
    private final String name;
    private final int maxLength; // 0: no truncation
    private final float[] table;
    private final String[] keys;
    private final QueryTokenizer tokenizer;
    private final String field;

    private QuerySide(String hash, String name, int maxLength, float[] table, String[] keys,
                      QueryTokenizer tokenizer, String field) {
        this.hash = hash;
        this.name = name;
        this.maxLength = maxLength;
        this.table = table;
        this.keys = keys;
        this.tokenizer = tokenizer;
        this.field = field;
    }

    // ---------------------------------------------------------------- loading

    /**
     * Loads a {@code query-side.json}, or the one in a folder (a pack written by
     * {@code splade-os query-side pack}).
     *
     * @throws QuerySideException the path holds no query side, or the file is not one
     * @throws IOException the file cannot be read
     */
    public static QuerySide load(Path path) throws IOException {
        Path file = Files.isDirectory(path) ? path.resolve(FILE) : path;
        if (!Files.isRegularFile(file)) {
            throw new QuerySideException(path + ": no query side here (expected a " + FILE + " or a folder holding one)");
        }
        return parse(Json.read(Files.readAllBytes(file), file.toString()), file.toString(), DEFAULT_FIELD);
    }

    /** A query side from the text of a {@code query-side.json}. */
    public static QuerySide fromJson(String json) {
        return parse(Json.read(json, "the query side"), "the query side", DEFAULT_FIELD);
    }

    /** A query side from the bytes (UTF-8) of a {@code query-side.json}. */
    public static QuerySide fromJson(byte[] json) {
        return parse(Json.read(json, "the query side"), "the query side", DEFAULT_FIELD);
    }

    /**
     * A query side from the cluster: the answer of {@code GET /splade-query-sides/_doc/<hash>}, or
     * its {@code _source} alone (the same document as a {@code query-side.json}).
     */
    public static QuerySide fromDocument(String documentJson) {
        return fromDocument(Json.read(documentJson, "the query-side document"), DEFAULT_FIELD);
    }

    /**
     * The query side of a splade-os index: reads {@code GET /<index>/_mapping} (its {@code _meta}
     * names the model's hash and the field) and then {@code GET /splade-query-sides/_doc/<hash>}
     * through {@code fetch}, the app's own HTTP client. The side's {@link #field()} is the index's.
     *
     * @throws QuerySideException the index was not made by splade-os, or its query side is not stored
     * @throws IOException what {@code fetch} throws
     */
    public static QuerySide fromCluster(JsonFetcher fetch, String index) throws IOException {
        SpladeIndex meta = SpladeIndex.fromMapping(fetch.get("/" + index + "/_mapping"));
        JsonNode document = Json.read(fetch.get("/" + QUERY_SIDES_INDEX + "/_doc/" + meta.hash()),
                "the query-side document " + meta.hash());
        QuerySide side = fromDocument(document, meta.field());
        if (!side.hash.isEmpty() && !side.hash.equals(meta.hash())) {
            side.close();
            throw new QuerySideException("index '" + index + "' names query side " + meta.hash()
                    + " but the stored one is " + side.hash);
        }
        return side;
    }

    /** This query side with another default field for {@link #body(String, String)} (shares the tokenizer). */
    public QuerySide withField(String field) {
        return new QuerySide(hash, name, maxLength, table, keys, tokenizer, requireField(field));
    }

    private static QuerySide fromDocument(JsonNode document, String field) {
        if (document.has("found") && !document.path("found").asBoolean()) {
            throw new QuerySideException("the query side " + document.path("_id").asText("")
                    + " is not stored in " + QUERY_SIDES_INDEX);
        }
        JsonNode source = document.has("_source") ? document.path("_source") : document;
        return parse(source, "the query-side document", field);
    }

    private static QuerySide parse(JsonNode side, String where, String field) {
        if (!side.isObject()) {
            throw notASide(where, "not a JSON object");
        }
        String tokenizerJson = text(side, "tokenizer_json", where);
        String encodedTable = text(side, "query_table", where);
        JsonNode length = side.path("max_length");
        int maxLength = 0;
        if (!length.isMissingNode() && !length.isNull()) {
            if (!length.canConvertToInt() || !length.isIntegralNumber() || length.asInt() < 0) {
                throw notASide(where, "\"max_length\" is not a non-negative integer");
            }
            maxLength = length.asInt();
        }
        JsonNode tokenizerNode = Json.read(tokenizerJson, where + ": its tokenizer_json");
        String[] tokens = vocabulary(tokenizerNode, where);
        float[] table = table(encodedTable, tokens.length, where);
        String hash = side.path("hash").asText("");
        if (!hash.isEmpty() && !hash.equals(vocabularyHash(tokens, table))) {
            throw new QuerySideException(where + ": its hash does not match its vocabulary and table "
                    + "(a damaged or hand-edited query side)");
        }
        String[] keys = new String[tokens.length];
        for (int i = 0; i < tokens.length; i++) {
            keys[i] = escapeKey(tokens[i]);
        }
        HuggingFaceTokenizer tokenizer;
        try {
            // No special tokens, and neither DJL's truncation (by default at the model's maximum
            // length, with special tokens counted) nor its padding: the cut is applied in tokenIds.
            tokenizer = HuggingFaceTokenizer.newInstance(
                    new ByteArrayInputStream(tokenizerJson.getBytes(StandardCharsets.UTF_8)),
                    Map.of("addSpecialTokens", "false", "truncation", "false", "padding", "false",
                            "withOverflowingTokens", "false"));
        } catch (EngineException | LinkageError e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            throw new IllegalStateException("the tokenizers native library (DJL) cannot be loaded here ("
                    + Json.oneLine(String.valueOf(cause.getMessage())) + ")", e);
        } catch (IOException | RuntimeException e) {
            throw new QuerySideException(where + ": its tokenizer_json cannot be loaded by the tokenizers library ("
                    + Json.oneLine(e.getMessage() == null ? e.toString() : e.getMessage()) + ")");
        }
        return new QuerySide(hash, side.path("name").asText(""), maxLength, table, keys,
                new QueryTokenizer(tokenizer, tokenizerNode), requireField(field));
    }

    private static String text(JsonNode side, String key, String where) {
        JsonNode value = side.get(key);
        if (value == null || !value.isTextual()) {
            throw notASide(where, "no \"" + key + "\" text");
        }
        return value.asText();
    }

    private static QuerySideException notASide(String where, String why) {
        return new QuerySideException(where + ": not a splade-os query side (" + why + ")");
    }

    /**
     * Token strings by id, as the tokenizers library's {@code get_vocab(with_added_tokens=True)}
     * gives them: the model's vocabulary (an object token -> id, or Unigram's list of [token, score])
     * and the added tokens.
     */
    private static String[] vocabulary(JsonNode tokenizer, String where) {
        Map<String, Integer> vocab = new LinkedHashMap<>();
        JsonNode model = tokenizer.path("model").path("vocab");
        if (model.isObject()) {
            for (Map.Entry<String, JsonNode> entry : model.properties()) {
                vocab.put(entry.getKey(), entry.getValue().asInt(-1));
            }
        } else if (model.isArray()) {
            int id = 0;
            for (JsonNode piece : model) {
                vocab.put(piece.path(0).asText(), id++);
            }
        } else {
            throw notASide(where, "its tokenizer_json has no model vocabulary");
        }
        for (JsonNode added : tokenizer.path("added_tokens")) {
            vocab.put(added.path("content").asText(), added.path("id").asInt(-1));
        }
        String[] tokens = new String[vocab.size()];
        Arrays.fill(tokens, "");
        for (Map.Entry<String, Integer> entry : vocab.entrySet()) {
            int id = entry.getValue();
            if (id < 0 || id >= tokens.length) {
                throw notASide(where, "its token ids are not contiguous (id " + id + ")");
            }
            tokens[id] = entry.getKey();
        }
        return tokens;
    }

    /** The table as float32 little-endian; a short one is padded with zeros (as the Python side). */
    private static float[] table(String encoded, int vocabSize, String where) {
        byte[] bytes;
        try {
            bytes = Base64.getDecoder().decode(encoded);
        } catch (IllegalArgumentException e) {
            try {
                bytes = Base64.getMimeDecoder().decode(encoded);
            } catch (IllegalArgumentException again) {
                throw notASide(where, "\"query_table\" is not base64");
            }
        }
        if (bytes.length % Float.BYTES != 0) {
            throw notASide(where, "\"query_table\" is not whole float32 values");
        }
        int count = bytes.length / Float.BYTES;
        if (count > vocabSize) {
            throw notASide(where, "its table has " + count + " weights but the vocabulary has " + vocabSize);
        }
        float[] table = new float[vocabSize];
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(table, 0, count);
        for (float weight : table) {
            if (!Float.isFinite(weight)) {
                throw notASide(where, "its table holds NaN or infinite weights");
            }
        }
        return table;
    }

    /** sha256 of the vocabulary (in id order, joined by "\n"), a zero byte and the table: the model's query hash. */
    static String vocabularyHash(String[] tokens, float[] table) {
        MessageDigest digest;
        try {
            digest = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        digest.update(String.join("\n", tokens).getBytes(StandardCharsets.UTF_8));
        digest.update((byte) 0);
        ByteBuffer bytes = ByteBuffer.allocate(table.length * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        bytes.asFloatBuffer().put(table);
        digest.update(bytes);
        return HexFormat.of().formatHex(digest.digest());
    }

    /** The feature key of a token: "%" -> "%25", then "." -> "%2E" (reversible; a key holds no "."). */
    public static String escapeKey(String token) {
        if (token.indexOf('%') < 0 && token.indexOf('.') < 0) {
            return token;
        }
        return token.replace("%", "%25").replace(".", "%2E");
    }

    // ---------------------------------------------------------------- queries

    /**
     * The query's token ids: the tokenizer's encoding without special tokens, the first
     * {@code max_length} of them.
     *
     * @throws IllegalArgumentException the text holds an unpaired surrogate (not valid Unicode)
     */
    public int[] tokenIds(String text) {
        checkText(text);
        return cut(tokenizer.ids(text));
    }

    /** {@link #tokenIds} straight from the library's encoding, without the cached word path (for tests). */
    int[] libraryTokenIds(String text) {
        checkText(text);
        return cut(tokenizer.libraryIds(text));
    }

    /** Whether printable-ASCII queries take the cached word path (BERT-style tokenizers). */
    boolean fastPath() {
        return tokenizer.fast();
    }

    private int[] cut(int[] ids) {
        return maxLength > 0 && ids.length > maxLength ? Arrays.copyOf(ids, maxLength) : ids;
    }

    /** The weighted query for {@code text}: its features, and its body for either engine. */
    public SpladeQuery query(String text) {
        return weigh(tokenIds(text));
    }

    /** The weighted query of token ids (a fresh array: it is sorted in place). */
    SpladeQuery weigh(int[] ids) {
        Arrays.sort(ids);
        int[] distinct = new int[ids.length];
        float[] weights = new float[ids.length];
        int count = 0;
        for (int i = 0; i < ids.length; i++) {
            int id = ids[i];
            if (i > 0 && id == ids[i - 1]) {
                continue; // a repeated token counts once
            }
            if (id >= table.length) {
                throw new IllegalStateException("token id " + id + " is outside the query table (" + table.length + ")");
            }
            float weight = table[id];
            if (weight != 0.0f) {
                distinct[count] = id;
                weights[count++] = weight;
            }
        }
        return new SpladeQuery(keys, Arrays.copyOf(distinct, count), Arrays.copyOf(weights, count));
    }

    /**
     * {escaped key: weight} for each distinct token of {@code text} with a non-zero weight
     * (negative weights included), in token id order.
     *
     * @throws IllegalArgumentException the text holds an unpaired surrogate
     */
    public Map<String, Float> features(String text) {
        return query(text).features();
    }

    /**
     * The search body for {@code text}: {@code {"size", "track_total_hits": false, "query"}} with the
     * feature query of {@code engine} ("opensearch" or "elasticsearch") on {@code field}: positive
     * weights only, highest first (ties by token id), at most {@code maxClauses} clauses. Plain maps
     * and lists, which the official OpenSearch and Elasticsearch Java clients take as a raw body.
     *
     * @throws IllegalArgumentException the text holds an unpaired surrogate, or an argument is out of range
     */
    public Map<String, Object> body(String text, String engine, String field, int size, int maxClauses) {
        return query(text).body(Engine.named(engine), field, size, maxClauses);
    }

    /** {@link #body(String, String, String, int, int)} on this side's {@link #field()}, 10 hits, 1024 clauses. */
    public Map<String, Object> body(String text, String engine) {
        return body(text, engine, field, DEFAULT_SIZE, DEFAULT_MAX_CLAUSES);
    }

    /**
     * Refuses text that is not valid Unicode (an unpaired surrogate), in the Python side's words.
     *
     * @throws IllegalArgumentException the text holds an unpaired surrogate
     */
    static void checkText(String text) {
        Objects.requireNonNull(text, "query text");
        int character = 0; // in code points, as Python counts
        for (int i = 0; i < text.length(); i++, character++) {
            char c = text.charAt(i);
            if (Character.isSurrogate(c)) {
                if (Character.isHighSurrogate(c) && i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1))) {
                    i++;
                    continue;
                }
                throw new IllegalArgumentException(String.format(
                        "query text holds an unpaired surrogate (\\u%04x at character %d), not valid Unicode "
                                + "(bytes that are not UTF-8?)", (int) c, character));
            }
        }
    }

    private static String requireField(String field) {
        if (field == null || field.isEmpty()) {
            throw new IllegalArgumentException("the SPLADE field name is empty");
        }
        return field;
    }

    // ---------------------------------------------------------------- what it is

    /** The model's query hash (sha256 of vocabulary and table; the {@code _id} in {@code splade-query-sides}). */
    public String hash() {
        return hash;
    }

    /** The model's name, for messages. */
    public String name() {
        return name;
    }

    /** The truncation length of a query's token ids; 0: none. */
    public int maxLength() {
        return maxLength;
    }

    /** The number of token ids (the vocabulary with added tokens). */
    public int vocabularySize() {
        return keys.length;
    }

    /** The default field of {@link #body(String, String)}: the index's when read from the cluster, else "splade". */
    public String field() {
        return field;
    }

    /** Frees the native tokenizer (instances made by {@link #withField} share it). */
    @Override
    public void close() {
        tokenizer.close();
    }

    @Override
    public String toString() {
        return "QuerySide[" + (name.isEmpty() ? "?" : name) + ", hash " + (hash.length() > 12 ? hash.substring(0, 12) : hash)
                + ", max_length " + maxLength + ", field " + field + "]";
    }
}
