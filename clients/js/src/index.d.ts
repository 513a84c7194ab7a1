/** The query side of a model as one JSON document: a `query-side.json`, or the `_source` of its
 * document in the cluster's `splade-query-sides` index (`_id` = `hash`). */
export interface QuerySideDocument {
  /** The `tokenizer.json` text (Hugging Face `tokenizers` format). */
  tokenizer_json: string;
  /** Base64 of float32 little-endian, one weight per token id. */
  query_table: string;
  /** Truncation length of a query's token ids; null: none. */
  max_length?: number | null;
  /** sha256 of the vocabulary and the table; checked when present. */
  hash?: string;
  name?: string;
  [other: string]: unknown;
}

export type Engine = "opensearch" | "elasticsearch";

export interface BodyOptions<E extends Engine = Engine> {
  engine: E;
  /** The SPLADE field documents were indexed into (an index's `_meta.splade_os.field`). Default "splade". */
  field?: string;
  /** Hits to return. Default 10. */
  size?: number;
  /** The cluster's `indices.query.bool.max_clause_count`: the highest weights are kept. Default 1024. */
  maxClauses?: number;
}

export interface RankFeatureClause {
  rank_feature: { field: string; boost: number; linear: Record<string, never> };
}
export interface TermClause {
  term: { [field: string]: { value: string; boost: number } };
}
export interface MatchNone {
  match_none: Record<string, never>;
}
export type OpenSearchQuery = { bool: { should: RankFeatureClause[] } } | MatchNone;
export type ElasticsearchQuery = { bool: { should: TermClause[] } } | MatchNone;

/** A search request body: `body` of the OpenSearch client's `search`, the fields of the
 * Elasticsearch client's `search` request. */
export interface SearchBody<Q = OpenSearchQuery | ElasticsearchQuery> {
  size: number;
  track_total_hits: false;
  query: Q;
}

/** Performs `GET <path>` on the cluster and resolves to the parsed JSON answer. */
export type ClusterGet = (path: string) => Promise<unknown>;

/** An input splade-os refuses: text that is not valid Unicode, a file that is not a query side,
 * an index splade-os did not make. Its message is one line. */
export class QuerySideError extends Error {}

export class QuerySide {
  /**
   * @param document a parsed `query-side.json`, or a `splade-query-sides` document's `_source`.
   * @param options where: names the source in messages; hash: the model hash it must have.
   * @throws QuerySideError when it is not a query side.
   */
  constructor(document: QuerySideDocument | object, options?: { where?: string; hash?: string });
  /** Load a `query-side.json`, or a folder holding one. */
  static fromFile(path: string): Promise<QuerySide>;
  /** The query side and SPLADE field of a splade-os index, read with `get` from
   * `/<index>/_mapping` and `/splade-query-sides/_doc/<hash>`. */
  static fromCluster(index: string, get: ClusterGet): Promise<{ side: QuerySide; field: string; hash: string }>;

  /** The model's query hash (its `_id` in `splade-query-sides`). */
  readonly hash: string;
  readonly name: string;
  /** Truncation length of the token ids; null: none. */
  readonly maxLength: number | null;

  /** Token ids of the query (no special tokens, the first `maxLength`). @throws QuerySideError on an unpaired surrogate. */
  ids(text: string): number[];
  /** {escaped feature key: float32 weight} of each distinct token of non-zero weight (negative ones kept). */
  features(text: string): Record<string, number>;
  /** The search body: positive weights only, highest first (ties by token id), at most `maxClauses`;
   * `{match_none: {}}` when no token has a positive weight. */
  body(text: string, options: BodyOptions<"opensearch">): SearchBody<OpenSearchQuery>;
  body(text: string, options: BodyOptions<"elasticsearch">): SearchBody<ElasticsearchQuery>;
  body(text: string, options: BodyOptions): SearchBody;
}

/** The model hash and SPLADE field recorded in an index's `_meta.splade_os`, from the answer of
 * `GET /<index>/_mapping`. @throws QuerySideError if splade-os did not make the index. */
export function indexModel(mapping: unknown, index?: string): { hash: string; field: string };

/** A token's feature key: "%" -> "%25", then "." -> "%2E". */
export function escapeKey(token: string): string;

export const QUERY_SIDE_FILE: "query-side.json";
export const QUERY_SIDE_INDEX: "splade-query-sides";
export const ENGINES: readonly Engine[];
export const DEFAULT_FIELD: "splade";
export const DEFAULT_MAX_CLAUSES: 1024;
