package io.spladeos.query;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.json.JsonWriteFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectWriter;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
import java.net.ConnectException;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.URLDecoder;
import java.net.UnknownHostException;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.UnresolvedAddressException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The query-port runner: JSON lines on stdin, one answer line each on stdout.
 *
 * <pre>
 * in:  {"text": ..., "max_clauses"?: 1024, "size"?: 10, "field"?: the side's field}
 * out: {"features": {key: weight}, "bodies": {"opensearch": {...}, "elasticsearch": {...}}}
 *      or {"error": "one line"}
 * </pre>
 *
 * Usage: {@code java -jar splade-os-query.jar --side PATH} (a query-side.json or a folder holding
 * one), or {@code --url URL --index NAME}: the query side of a splade-os index, read from the
 * cluster as an app reads it ({@link QuerySide#fromCluster} over {@code java.net.http.HttpClient});
 * a request without "field" then uses the index's field. A query side that cannot be loaded: exit
 * 1 with one line on stderr and nothing on stdout; a bad command line: exit 2.
 */
public final class Runner {
    private Runner() {}

    static final String USAGE = "usage: query-port --side PATH (a query-side.json or a folder holding one)"
            + " | --url URL --index NAME (a splade-os index in that cluster)";
    private static final String SHORT_USAGE = "usage: query-port --side PATH | --url URL --index NAME";

    public static void main(String[] args) throws IOException {
        QuerySide side = null;
        try {
            Options options = Options.parse(args);
            if (options.help()) {
                System.out.println(USAGE);
                return;
            }
            side = open(options);
        } catch (Failure e) {
            System.err.println("query-port: " + e.getMessage());
            System.exit(e.status);
        }
        OutputStream out = new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16);
        serve(side, new BufferedInputStream(System.in, 1 << 16), out);
        side.close();
    }

    /** Why the runner stops before serving: its exit status and its one-line message. */
    static final class Failure extends Exception {
        final int status;

        Failure(int status, String message) {
            super(Json.oneLine(message.replaceAll("\\s*[\\r\\n]+\\s*", " ")), null, false, false);
            this.status = status;
        }

        static Failure usage(String problem) {
            return new Failure(2, problem + " (" + SHORT_USAGE + ")");
        }
    }

    /** The command line: {@code --side PATH}, or {@code --url URL --index NAME} (or {@code --help}). */
    record Options(Path side, String url, String index, boolean help) {
        static Options parse(String[] args) throws Failure {
            String side = null;
            String url = null;
            String index = null;
            for (int i = 0; i < args.length; i++) {
                String arg = args[i];
                if (arg.equals("-h") || arg.equals("--help")) {
                    return new Options(null, null, null, true);
                }
                int equals = arg.indexOf('=');
                String name = arg.startsWith("--") && equals > 0 ? arg.substring(0, equals) : arg;
                if (!name.equals("--side") && !name.equals("--model") && !name.equals("--url") && !name.equals("--index")) {
                    throw Failure.usage("unknown argument " + arg);
                }
                String value = equals > 0 && name.length() < arg.length() ? arg.substring(equals + 1)
                        : i + 1 < args.length ? args[++i] : null;
                if (value == null) {
                    throw Failure.usage(name + " needs a value");
                }
                switch (name) {
                    case "--url" -> url = value;
                    case "--index" -> index = value;
                    default -> side = value;
                }
            }
            if (side != null && (url != null || index != null)) {
                throw Failure.usage("give --side, or --url and --index, not both");
            }
            if (side != null) {
                if (side.isEmpty()) {
                    throw Failure.usage("--side needs a path");
                }
                return new Options(Path.of(side), null, null, false);
            }
            if (url == null && index == null) {
                throw new Failure(2, USAGE);
            }
            if (url == null || index == null) {
                throw Failure.usage("--url and --index go together");
            }
            if (index.isEmpty() || index.contains("/")) {
                throw Failure.usage("--index: \"" + index + "\" is not an index name");
            }
            return new Options(null, url, index, false);
        }
    }

    /** The query side the options name: from a file, or from the cluster as an app reads it. */
    static QuerySide open(Options options) throws Failure {
        if (options.side() != null) {
            try {
                return QuerySide.load(options.side());
            } catch (IOException | RuntimeException | LinkageError e) {
                throw new Failure(1, messageOf(e));
            }
        }
        Cluster cluster = Cluster.of(options.url());
        String index = options.index();
        try {
            return QuerySide.fromCluster(cluster, index);
        } catch (Cluster.NoSuchIndex e) {
            throw new Failure(1, indexMessage(index, cluster.shown, "no such index"));
        } catch (Cluster.Unanswered e) {
            throw new Failure(1, e.getMessage());
        } catch (IOException | RuntimeException | LinkageError e) {
            throw new Failure(1, indexMessage(index, cluster.shown, messageOf(e)));
        }
    }

    private static String messageOf(Throwable e) {
        return Json.oneLine(e.getMessage() == null ? e.toString() : e.getMessage());
    }

    /** A failure to load {@code index}'s query side, naming the index and the cluster. */
    private static String indexMessage(String index, String shown, String message) {
        for (String named : new String[] {"index \"" + index + "\"", "index '" + index + "'"}) {
            if (message.startsWith(named)) {
                return named + " at " + shown + message.substring(named.length());
            }
        }
        return "index \"" + index + "\" at " + shown + ": " + message;
    }

    /**
     * GETs on a cluster with the JDK's own HTTP client: {@code user:password} in the URL becomes
     * basic auth, and messages show the URL with the password as {@code ***}.
     */
    static final class Cluster implements QuerySide.JsonFetcher {
        static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(10);
        static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(60); // a query side is a few MB at most

        /** The mapping GET found no such index. */
        static final class NoSuchIndex extends IOException {
            NoSuchIndex() {
                super("no such index");
            }
        }

        /** The cluster cannot be reached, or answered what no cluster answers: the message is complete. */
        static final class Unanswered extends IOException {
            Unanswered(String message) {
                super(message);
            }
        }

        final String base; // scheme://host:port/path, no credentials, no final "/"
        final String shown; // the same with user:***@ where the URL has credentials
        private final String authorization; // null: none
        private final HttpClient client;

        private Cluster(String base, String shown, String authorization) {
            this.base = base;
            this.shown = shown;
            this.authorization = authorization;
            this.client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                    .connectTimeout(CONNECT_TIMEOUT).followRedirects(HttpClient.Redirect.NORMAL).build();
        }

        /** The cluster at {@code raw} ({@code http[s]://[user:password@]host:port[/path]}); never echoes it. */
        static Cluster of(String raw) throws Failure {
            URI uri;
            try {
                uri = new URI(raw);
            } catch (URISyntaxException e) {
                throw Failure.usage("--url: not a URL (expected http[s]://[user:password@]host:port)");
            }
            String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
            if (!scheme.equals("http") && !scheme.equals("https")) {
                throw Failure.usage("--url: expected an http:// or https:// URL");
            }
            if (uri.getHost() == null) {
                throw Failure.usage("--url: no host in it (expected http[s]://[user:password@]host:port)");
            }
            if (uri.getRawQuery() != null || uri.getRawFragment() != null) {
                throw Failure.usage("--url: the cluster's address takes no ?query or #fragment");
            }
            String path = uri.getRawPath() == null ? "" : uri.getRawPath().replaceAll("/+$", "");
            String hostPort = uri.getHost() + (uri.getPort() >= 0 ? ":" + uri.getPort() : "");
            String userInfo = uri.getRawUserInfo();
            String authorization = null;
            String user = "";
            if (userInfo != null) {
                int colon = userInfo.indexOf(':');
                String name = colon < 0 ? userInfo : userInfo.substring(0, colon);
                String password = colon < 0 ? "" : userInfo.substring(colon + 1);
                user = name + (colon < 0 ? "" : ":***") + "@";
                String credentials = unescape(name) + ":" + unescape(password);
                authorization = "Basic " + Base64.getEncoder().encodeToString(credentials.getBytes(StandardCharsets.UTF_8));
            }
            return new Cluster(scheme + "://" + hostPort + path, scheme + "://" + user + hostPort + path, authorization);
        }

        private static String unescape(String text) {
            return URLDecoder.decode(text.replace("+", "%2B"), StandardCharsets.UTF_8);
        }

        /** The JSON answer of {@code GET path}; a query-side document that is not stored: {@code {"found": false}}. */
        @Override
        public String get(String path) throws IOException {
            HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(base + escapePath(path)))
                    .timeout(REQUEST_TIMEOUT).header("Accept", "application/json").GET();
            if (authorization != null) {
                request.header("Authorization", authorization);
            }
            HttpResponse<String> response;
            try {
                response = client.send(request.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new Unanswered("interrupted while reading from " + shown);
            } catch (IOException e) {
                throw new Unanswered("cannot reach " + shown + " (" + why(e) + ")");
            }
            int status = response.statusCode();
            JsonNode answer;
            try {
                answer = Json.MAPPER.readTree(response.body());
            } catch (JsonProcessingException e) {
                answer = null;
            }
            if (status / 100 == 2) {
                if (answer == null || answer.isMissingNode()) {
                    throw new Unanswered(shown + ": GET " + path + " answered HTTP " + status
                            + " with no JSON (is this OpenSearch or Elasticsearch?)");
                }
                return response.body();
            }
            JsonNode error = answer == null ? Json.MAPPER.missingNode() : answer.path("error");
            String queryDocs = "/" + QuerySide.QUERY_SIDES_INDEX + "/_doc/";
            if (status == 404 && path.startsWith(queryDocs)) {
                // the document, or its whole index, is missing: not stored
                ObjectNode missing = answer != null && answer.isObject() ? (ObjectNode) answer : Json.MAPPER.createObjectNode();
                missing.put("found", false);
                if (!missing.path("_id").isTextual()) {
                    missing.put("_id", path.substring(queryDocs.length()));
                }
                return missing.toString();
            }
            if (status == 404 && error.path("type").asText("").equals("index_not_found_exception")) {
                throw new NoSuchIndex();
            }
            String reason = error.isTextual() ? error.asText()
                    : error.path("reason").asText(error.path("type").asText(""));
            if (reason.isEmpty() && answer == null) {
                reason = response.body().length() > 200 ? response.body().substring(0, 200) : response.body();
            }
            reason = Json.oneLine(reason.replaceAll("\\s*[\\r\\n]+\\s*", " "));
            throw new Unanswered(shown + ": GET " + path + " answered HTTP " + status + (reason.isEmpty() ? "" : " (" + reason + ")"));
        }

        /** Why a request got no answer, in words (the JDK's exceptions often have no message). */
        static String why(IOException e) {
            if (e instanceof HttpConnectTimeoutException) {
                return "connection timed out after " + CONNECT_TIMEOUT.toSeconds() + " s";
            }
            if (e instanceof HttpTimeoutException) {
                return "no answer in " + REQUEST_TIMEOUT.toSeconds() + " s";
            }
            String message = null;
            for (Throwable t = e; t != null; t = t.getCause()) {
                if (t instanceof UnresolvedAddressException || t instanceof UnknownHostException) {
                    return "host not found";
                }
                if (t instanceof ClosedChannelException && e instanceof ConnectException) {
                    return "connection refused";
                }
                if (message == null && t.getMessage() != null && !t.getMessage().isBlank()) {
                    message = Json.oneLine(t.getMessage());
                }
            }
            return message != null ? message : e.getClass().getSimpleName();
        }

        /** The path with each character that a URI path may not hold percent-encoded (UTF-8). */
        static String escapePath(String path) {
            StringBuilder out = new StringBuilder(path.length());
            for (byte b : path.getBytes(StandardCharsets.UTF_8)) {
                int c = b & 0xff;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || "-._~/!$&'()*+,;=:@".indexOf(c) >= 0) {
                    out.append((char) c);
                } else {
                    out.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16)))
                            .append(Character.toUpperCase(Character.forDigit(c & 15, 16)));
                }
            }
            return out.toString();
        }
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
            String field = fieldNode.isMissingNode() ? side.field() : fieldNode.asText();
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
