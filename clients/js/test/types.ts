// Compiled by `npm run typecheck` (tsc, no output): the declarations as an app uses them.
import { QuerySide, QuerySideError, indexModel, type ClusterGet, type SearchBody, type OpenSearchQuery } from "../src/index.js";

export async function example(get: ClusterGet): Promise<void> {
  const side: QuerySide = await QuerySide.fromFile("build/pack-default");
  const features: Record<string, number> = side.features("what is lift?");
  const os: SearchBody<OpenSearchQuery> = side.body("what is lift?", { engine: "opensearch", size: 5 });
  const es = side.body("what is lift?", { engine: "elasticsearch", field: "splade", maxClauses: 512 });
  const first = "bool" in es.query ? es.query.bool.should[0]?.term : undefined;
  const { side: remote, field, hash } = await QuerySide.fromCluster("docs", get);
  const meta: { hash: string; field: string } = indexModel({}, "docs");
  const ids: number[] = remote.ids("x");
  const error: Error = new QuerySideError("x");
  void [features, os, first, field, hash, meta, ids, error, side.maxLength, side.hash];
}
