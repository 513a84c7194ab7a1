package io.spladeos.query;

/**
 * DJL settings for a query library, set only where the app has not set them: no telemetry call
 * home (it would first probe the EC2 metadata service), and the CPU build of the tokenizers
 * library bundled in its jar (never a download of a CUDA build on a GPU machine).
 */
final class DjlDefaults {
    private DjlDefaults() {}

    static void apply() {
        setIfAbsent("OPT_OUT_TRACKING", "true");
        setIfAbsent("RUST_FLAVOR", "cpu");
    }

    private static void setIfAbsent(String key, String value) {
        if (System.getenv(key) == null && System.getProperty(key) == null) {
            System.setProperty(key, value);
        }
    }
}
