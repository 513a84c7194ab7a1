package io.spladeos.query;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;

/** The one Jackson mapper of the package, and one-line messages for what it refuses. */
final class Json {
    static final ObjectMapper MAPPER = new ObjectMapper();

    private Json() {}

    static JsonNode read(String text, String what) {
        try {
            return MAPPER.readTree(text);
        } catch (JsonProcessingException e) {
            throw new QuerySideException(what + " is not JSON (" + message(e) + ")");
        }
    }

    static JsonNode read(byte[] bytes, String what) {
        try {
            return MAPPER.readTree(bytes);
        } catch (IOException e) {
            throw new QuerySideException(what + " is not JSON (" + message(e) + ")");
        }
    }

    /** A Jackson message without its location lines. */
    static String message(Exception e) {
        String text = e instanceof JsonProcessingException ? ((JsonProcessingException) e).getOriginalMessage()
                : e.getMessage();
        return oneLine(text == null ? e.getClass().getSimpleName() : text);
    }

    static String oneLine(String text) {
        if (text == null) {
            return "";
        }
        int end = text.indexOf('\n');
        return (end < 0 ? text : text.substring(0, end)).strip();
    }
}
