package io.spladeos.query;

/** A query side that cannot be used: not a splade-os query side, or not the one an index names. One line. */
public class QuerySideException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public QuerySideException(String message) {
        super(message);
    }
}
