package io.spladeos.query;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A query's token ids, equal to the tokenizers library's encoding without special tokens, and
 * faster for BERT-style tokenizers (the Python side's {@code splade_os.query.tokenizer}).
 *
 * <p>For a tokenizer of BertNormalizer + BertPreTokenizer + WordPiece and a query of printable
 * ASCII holding no added token, normalising and pre-tokenizing reduce to "lowercase (when the
 * normalizer does), then split into runs of letters and digits and single punctuation
 * characters"; each such word's ids still come from the library (the word encoded alone, which
 * WordPiece tokenizes word by word anyway), cached per word. Any other text or tokenizer goes
 * through the library's encoding unchanged.
 */
final class QueryTokenizer implements AutoCloseable {
    private static final int MAX_ADDED_TOKENS = 256; // beyond this, looking for them costs more than it saves
    private static final int MAX_CACHED_WORDS = 1 << 16;

    private final HuggingFaceTokenizer tokenizer;
    private final boolean fast;
    private final boolean lowercase;
    private final String[] added; // added tokens, lowercased: a query holding one takes the library's path
    private final ConcurrentHashMap<String, int[]> words = new ConcurrentHashMap<>();

    QueryTokenizer(HuggingFaceTokenizer tokenizer, JsonNode json) {
        this.tokenizer = tokenizer;
        JsonNode normalizer = json.path("normalizer");
        List<String> addedTokens = new ArrayList<>();
        for (JsonNode token : json.path("added_tokens")) {
            String content = token.path("content").asText("");
            if (!content.isEmpty()) {
                addedTokens.add(content.toLowerCase(Locale.ROOT));
            }
        }
        this.fast = "BertNormalizer".equals(normalizer.path("type").asText())
                && normalizer.path("lowercase").isBoolean()
                && "BertPreTokenizer".equals(json.path("pre_tokenizer").path("type").asText())
                && "WordPiece".equals(json.path("model").path("type").asText())
                && addedTokens.size() <= MAX_ADDED_TOKENS;
        this.lowercase = fast && normalizer.path("lowercase").asBoolean();
        this.added = addedTokens.toArray(new String[0]);
    }

    /** All the token ids of {@code text} (valid Unicode), without special tokens and without truncation. */
    int[] ids(String text) {
        int[] ids = fast ? asciiIds(text) : null;
        return ids != null ? ids : libraryIds(text);
    }

    /** The library's own encoding, without special tokens, padding or truncation. */
    int[] libraryIds(String text) {
        long[] ids = tokenizer.encode(text, false, false).getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    /** The ids by words of printable ASCII, or null where that text must take the library's path. */
    private int[] asciiIds(String text) {
        int length = text.length();
        char[] folded = new char[length];
        char[] lower = new char[length];
        for (int i = 0; i < length; i++) {
            char c = text.charAt(i);
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c > 0x7e) {
                return null;
            }
            lower[i] = c >= 'A' && c <= 'Z' ? (char) (c + 32) : c;
            folded[i] = lowercase ? lower[i] : c;
        }
        if (added.length > 0) {
            String lowered = new String(lower);
            for (String token : added) {
                if (lowered.contains(token)) {
                    return null;
                }
            }
        }
        int[] out = new int[Math.max(8, length)];
        int count = 0;
        int i = 0;
        while (i < length) {
            char c = folded[i];
            int end;
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                i++;
                continue;
            } else if (isAlnum(c)) {
                end = i + 1;
                while (end < length && isAlnum(folded[end])) {
                    end++;
                }
            } else {
                end = i + 1; // every other printable ASCII character is punctuation, a word of its own
            }
            String word = new String(folded, i, end - i);
            int[] ids = words.get(word);
            if (ids == null) {
                ids = libraryIds(word);
                if (words.size() >= MAX_CACHED_WORDS) {
                    words.clear();
                }
                words.put(word, ids);
            }
            if (count + ids.length > out.length) {
                out = Arrays.copyOf(out, Math.max(out.length * 2, count + ids.length));
            }
            System.arraycopy(ids, 0, out, count, ids.length);
            count += ids.length;
            i = end;
        }
        return Arrays.copyOf(out, count);
    }

    private static boolean isAlnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    }

    /** Whether BERT-style queries of printable ASCII take the cached word path. */
    boolean fast() {
        return fast;
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
