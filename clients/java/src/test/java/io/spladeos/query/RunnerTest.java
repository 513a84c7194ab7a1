package io.spladeos.query;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
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

    /** A stand-in cluster: {path: [status, body]}; the Authorization header of each request is kept. */
    private static HttpServer cluster(Map<String, Object[]> answers, Map<String, String> seen) throws IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", exchange -> {
            String path = exchange.getRequestURI().getRawPath();
            seen.put(path, String.valueOf(exchange.getRequestHeaders().getFirst("Authorization")));
            Object[] answer = answers.getOrDefault(path, new Object[] {404,
                    "{\"error\": {\"type\": \"index_not_found_exception\", \"reason\": \"no such index\"}, \"status\": 404}"});
            byte[] body = ((String) answer[1]).getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders((Integer) answer[0], body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        return server;
    }

    private static String mapping(String index, String meta) {
        return "{\"" + index + "\": {\"mappings\": {" + meta + "\"properties\": {}}}}";
    }

    @Test
    void readsTheQuerySideOfAnIndexFromTheCluster() throws Exception {
        String document = Files.readString(Packs.tiny().resolve(QuerySide.FILE));
        String hash = Json.MAPPER.readTree(document).path("hash").asText();
        Map<String, Object[]> answers = new ConcurrentHashMap<>();
        answers.put("/docs/_mapping", new Object[] {200, mapping("docs",
                "\"_meta\": {\"splade_os\": {\"field\": \"sv\", \"model\": {\"hash\": \"" + hash + "\"}}}, ")});
        answers.put("/splade-query-sides/_doc/" + hash, new Object[] {200,
                "{\"_id\": \"" + hash + "\", \"found\": true, \"_source\": " + document + "}"});
        answers.put("/plain/_mapping", new Object[] {200, mapping("plain", "")});
        answers.put("/gone/_mapping", new Object[] {200, mapping("gone",
                "\"_meta\": {\"splade_os\": {\"field\": \"sv\", \"model\": {\"hash\": \"" + "f".repeat(64) + "\"}}}, ")});
        answers.put("/locked/_mapping", new Object[] {401,
                "{\"error\": {\"type\": \"security_exception\", \"reason\": \"unable to authenticate user [u]\"}, \"status\": 401}"});
        Map<String, String> seen = new ConcurrentHashMap<>();
        HttpServer server = cluster(answers, seen);
        int port = server.getAddress().getPort();
        String url = "http://u:p%40ss@127.0.0.1:" + port + "/";
        String shown = "http://u:***@127.0.0.1:" + port;
        try {
            try (QuerySide side = Runner.open(Runner.Options.parse(new String[] {"--url", url, "--index", "docs"}));
                 QuerySide file = QuerySide.load(Packs.tiny())) {
                assertEquals("Basic " + Base64.getEncoder().encodeToString("u:p@ss".getBytes(StandardCharsets.UTF_8)),
                        seen.get("/docs/_mapping"));
                assertEquals("sv", side.field());
                ByteArrayOutputStream output = new ByteArrayOutputStream();
                Runner.serve(side, new ByteArrayInputStream("{\"text\": \"what is lift?\"}\n{\"text\": \"lift\", \"field\": \"f\"}\n"
                        .getBytes(StandardCharsets.UTF_8)), output);
                List<String> lines = output.toString(StandardCharsets.UTF_8).lines().toList();
                JsonNode first = Json.MAPPER.readTree(lines.get(0));
                assertEquals(Json.MAPPER.valueToTree(file.body("what is lift?", "opensearch", "sv", 10, 1024)),
                        first.path("bodies").path("opensearch"));
                assertEquals(Json.MAPPER.valueToTree(file.features("what is lift?")).toString(), first.path("features").toString());
                assertTrue(lines.get(1).contains("\"f.lift\""), lines.get(1));
            }
            Map<String, String> refusals = Map.of(
                    "nosuch", "index \"nosuch\" at " + shown + ": no such index",
                    "plain", "index \"plain\" at " + shown + ": not an index made by splade-os (no splade_os entry in its _meta)",
                    "gone", "index \"gone\" at " + shown + ": the query side " + "f".repeat(64) + " is not stored in splade-query-sides",
                    "locked", shown + ": GET /locked/_mapping answered HTTP 401 (unable to authenticate user [u])");
            for (Map.Entry<String, String> refusal : refusals.entrySet()) {
                Runner.Failure failure = assertThrows(Runner.Failure.class,
                        () -> Runner.open(Runner.Options.parse(new String[] {"--url", url, "--index", refusal.getKey()})));
                assertEquals(1, failure.status);
                assertEquals(refusal.getValue(), failure.getMessage());
            }
        } finally {
            server.stop(0);
        }
        Runner.Failure unreachable = assertThrows(Runner.Failure.class,
                () -> Runner.open(Runner.Options.parse(new String[] {"--url", url, "--index", "docs"})));
        assertEquals(1, unreachable.status);
        assertTrue(unreachable.getMessage().startsWith("cannot reach " + shown + " ("), unreachable.getMessage());
        for (String[] args : new String[][] {{"--url", "ftp://u:secret@h", "--index", "docs"}, {"--url", "http://u:secret@[x", "--index", "i"},
                {"--url", url}, {"--index", "docs"}, {"--side", "p", "--url", url, "--index", "docs"}, {"--url", url, "--index", "a/b"}}) {
            Runner.Failure usage = assertThrows(Runner.Failure.class, () -> Runner.open(Runner.Options.parse(args)));
            assertEquals(2, usage.status, usage.getMessage());
            assertFalse(usage.getMessage().contains("secret") || usage.getMessage().contains("p%40ss"), usage.getMessage());
        }
    }
}
