package io.spladeos.query;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.json.JsonWriteFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectWriter;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The query-port runner: JSON lines on stdin, one answer line each on stdout.
 *
 * <pre>
 * in:  {"text": ..., "max_clauses"?: 1024, "size"?: 10, "field"?: "splade"}
 * out: {"features": {key: weight}, "bodies": {"opensearch": {...}, "elasticsearch": {...}}}
 *      or {"error": "one line"}
 * </pre>
 *
 * Usage: {@code java -jar splade-os-query.jar --side PATH} (a query-side.json or a folder holding one).
 */
public final class Runner {
    private Runner() {}

    public static void main(String[] args) throws IOException {
        Path sidePath = null;
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--side") && i + 1 < args.length) {
                sidePath = Path.of(args[++i]);
            } else if (args[i].equals("-h") || args[i].equals("--help")) {
                System.out.println("usage: query-port --side PATH   (PATH: a query-side.json or a folder holding one)");
                return;
            } else {
                fail(2, "unknown argument " + args[i] + " (expected --side PATH)");
            }
        }
        if (sidePath == null) {
            fail(2, "usage: query-port --side PATH (a query-side.json or a folder holding one)");
        }
        QuerySide side = null;
        try {
            side = QuerySide.load(sidePath);
        } catch (IOException | RuntimeException | LinkageError e) {
            fail(1, Json.oneLine(e.getMessage() == null ? e.toString() : e.getMessage()));
        }
        OutputStream out = new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16);
        serve(side, new BufferedInputStream(System.in, 1 << 16), out);
        side.close();
    }

    private static void fail(int status, String message) {
        System.err.println("query-port: " + message);
        System.exit(status);
    }

    /**
     * Replies as ASCII JSON: a token such as U+2028 (a line separator to many line readers, kept
     * by some tokenizers) is written as an escape, so each reply stays one line for any reader.
     */
    private static final ObjectWriter WRITER = Json.MAPPER.writer().with(JsonWriteFeature.ESCAPE_NON_ASCII);

    /** Answers each non-blank line of {@code in} with one line on {@code out}, flushed. */
    static void serve(QuerySide side, InputStream in, OutputStream out) throws IOException {
        CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteArrayOutputStream line = new ByteArrayOutputStream(256);
        int number = 0;
        for (int b = in.read(); ; b = in.read()) {
            if (b >= 0 && b != '\n') {
                line.write(b);
                continue;
            }
            if (b < 0 && line.size() == 0) {
                break;
            }
            number++;
            Map<String, Object> reply;
            try {
                String text = utf8.decode(ByteBuffer.wrap(line.toByteArray())).toString();
                reply = text.isBlank() ? null : answer(side, text);
            } catch (CharacterCodingException e) {
                reply = Map.of("error", "line " + number + " is not valid UTF-8");
            }
            line.reset();
            if (reply != null) {
                out.write(WRITER.writeValueAsBytes(reply));
                out.write('\n');
                out.flush();
            }
            if (b < 0) {
                break;
            }
        }
    }

    /** The answer to one request line (the same as the Python side's {@code splade_os.query.pack.answer}). */
    static Map<String, Object> answer(QuerySide side, String line) {
        JsonNode request;
        try {
            request = Json.MAPPER.readTree(line);
        } catch (JsonProcessingException e) {
            return Map.of("error", "not a JSON line (" + Json.message(e) + ")");
        }
        if (request == null || !request.isObject() || !request.path("text").isTextual()) {
            return Map.of("error", "expected a JSON object with a \"text\" string");
        }
        try {
            int cap = integer(request, "max_clauses", QuerySide.DEFAULT_MAX_CLAUSES);
            int size = integer(request, "size", QuerySide.DEFAULT_SIZE);
            JsonNode fieldNode = request.path("field");
            if (!fieldNode.isMissingNode() && !fieldNode.isTextual()) {
                throw new IllegalArgumentException("\"field\" must be a string");
            }
            String field = fieldNode.asText(QuerySide.DEFAULT_FIELD);
            SpladeQuery query = side.query(request.path("text").asText());
            Map<String, Object> features = new LinkedHashMap<>();
            // float32 widened to double: the same number as the Python side writes, parsing back to the same float32
            query.features().forEach((key, weight) -> features.put(key, (double) weight));
            Map<String, Object> bodies = new LinkedHashMap<>();
            for (Engine engine : Engine.values()) {
                bodies.put(engine.id(), query.body(engine, field, size, cap));
            }
            Map<String, Object> reply = new LinkedHashMap<>();
            reply.put("features", features);
            reply.put("bodies", bodies);
            return reply;
        } catch (RuntimeException e) {
            return Map.of("error", Json.oneLine(e.getMessage() == null ? e.toString() : e.getMessage()));
        }
    }

    private static int integer(JsonNode request, String key, int fallback) {
        JsonNode value = request.path(key);
        if (value.isMissingNode()) {
            return fallback;
        }
        if (!value.isIntegralNumber() || !value.canConvertToInt() || value.asInt() < 0) {
            throw new IllegalArgumentException("\"" + key + "\" must be a non-negative integer");
        }
        return value.asInt();
    }
}
