package io.spladeos.query;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The runner's protocol: one answer line per non-blank request line, errors as one-line JSON. */
class RunnerTest {

    @Test
    void eachLineGetsOneAnswer() throws Exception {
        try (QuerySide side = QuerySide.load(Packs.tiny())) {
            ByteArrayOutputStream input = new ByteArrayOutputStream();
            input.writeBytes(("{\"text\": \"what is lift?\", \"size\": 3, \"max_clauses\": 2, \"field\": \"f\"}\n\n"
                    + "not json\n[1]\n{\"text\": \"\\ud800\"}\n{\"text\": \"lift\", \"size\": -1}\n").getBytes(StandardCharsets.UTF_8));
            input.writeBytes(new byte[] {'{', '"', 't', 'e', 'x', 't', '"', ':', '"', (byte) 0xff, '"', '}', '\n'});
            input.writeBytes("{\"text\": \"Ångström\"}".getBytes(StandardCharsets.UTF_8)); // no final newline
            ByteArrayOutputStream output = new ByteArrayOutputStream();
            Runner.serve(side, new ByteArrayInputStream(input.toByteArray()), output);
            List<String> lines = output.toString(StandardCharsets.UTF_8).lines().toList();
            assertEquals(7, lines.size(), String.join("\n", lines));
            JsonNode first = Json.MAPPER.readTree(lines.get(0));
            assertEquals(side.features("what is lift?").size(), first.path("features").size());
            JsonNode os = first.path("bodies").path("opensearch");
            assertEquals(3, os.path("size").asInt());
            assertEquals(2, os.path("query").path("bool").path("should").size());
            assertTrue(os.toString().contains("\"f.lift\""), os.toString());
            assertTrue(first.path("bodies").path("elasticsearch").toString().contains("{\"f\":{\"value\":"));
            assertTrue(lines.get(1).startsWith("{\"error\":\"not a JSON line ("), lines.get(1));
            assertEquals("{\"error\":\"expected a JSON object with a \\\"text\\\" string\"}", lines.get(2));
            assertTrue(lines.get(3).contains("unpaired surrogate"), lines.get(3));
            assertEquals("{\"error\":\"\\\"size\\\" must be a non-negative integer\"}", lines.get(4));
            assertEquals("{\"error\":\"line 7 is not valid UTF-8\"}", lines.get(5));
            JsonNode last = Json.MAPPER.readTree(lines.get(6));
            assertEquals(Json.MAPPER.valueToTree(side.body("Ångström", "elasticsearch")), last.path("bodies").path("elasticsearch"));
        }
    }
}
