"""Commands for models: `train` (its options in recipe tables, `--recipe FILE`), `push`, `pull`, `export`."""

import functools
from pathlib import Path

import click

from splade_os.cli.options import cluster_options, handle_errors, index_option, options, quiet
from splade_os.cli.run import json_option, print_json
from splade_os.common.errors import InputError
from splade_os.models.export import LAYOUTS
from splade_os.training.negatives import MiningOptions
from splade_os.training.teacher import TeacherOptions
from splade_os.training.trainer import TrainArgs

# Which recipe table (splade_os.training.recipes) each of train's options belongs to.
TABLES = {
    "data": ("data", "query_column", "positive_column", "negative_column", "beir", "beir_split", "pairs", "index",
             "base", "init_idf", "continue_from", "validation_queries", "eval_beir"),
    "negatives": ("hard_negatives", "negative_count", "negatives_skip"),
    "teacher": ("teacher", "teacher_mix", "teacher_candidates", "teacher_pool", "teacher_temperature"),
    "trainer": ("output", "lr", "static_lr", "batch_size", "epochs", "max_steps", "warmup_ratio", "target_doc_dims",
                "doc_reg", "query_reg", "seed", "precision", "max_seq_length", "save_steps", "eval_steps",
                "interpolate", "force"),
}
TABLE_OF = {name: table for table, names in TABLES.items() for name in names}


def _pair_kinds(ctx, param, value: str) -> str:
    from splade_os.training.pairs import pair_kinds

    try:
        pair_kinds(value)
    except InputError as e:
        raise click.BadParameter(str(e), param_hint="--pairs")
    return value


def _long_flags(command) -> dict:
    return {opt[2:]: param for param in command.params for opt in param.opts if opt.startswith("--")}


def _read_recipe(ctx, param, path):
    """--recipe FILE: its values become the defaults of train's options (a flag given overrides them)."""
    if path is None:
        return None
    from splade_os.training.recipes import read_recipe

    try:
        tables = read_recipe(path)
    except InputError as e:
        raise click.BadParameter(str(e), param_hint="--recipe") from None
    flags, values = _long_flags(ctx.command), {}
    for table, entries in tables.items():
        for key, value in entries.items():
            option = flags.get(key)
            if option is None or TABLE_OF.get(option.name) != table:
                known = ", ".join(sorted(k for k, o in flags.items() if TABLE_OF.get(o.name) == table))
                raise click.BadParameter(f"{path}: [{table}] has no option {key!r} (it takes {known})",
                                         param_hint="--recipe")
            values[option.name] = value
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return path


def used_recipe(ctx) -> dict:
    """The run's options as recipe tables: what `train` saves beside the model."""
    names = {param.name: next(o[2:] for o in param.opts if o.startswith("--")) for param in ctx.command.params
             if param.name in TABLE_OF}
    recipe = {table: {} for table in TABLES}
    for name, value in ctx.params.items():
        if name in TABLE_OF and value is not None and value != () and not (value is False):
            recipe[TABLE_OF[name]][names[name]] = str(value) if isinstance(value, Path) else value
    return recipe


def recipe_options(f):
    """Where pairs, the start, negatives, the teacher and validation come from -> `recipe` (a `Recipe`)."""

    @functools.wraps(f)
    def wrapper(*args, data, query_column, positive_column, negative_column, beir, beir_split, pairs, hard_negatives,
                negative_count, negatives_skip, teacher, teacher_mix, teacher_candidates, teacher_pool, index, base,
                init_idf, continue_from, validation_queries, eval_beir, **kwargs):
        from splade_os.training.trainer import Recipe

        mining = MiningOptions.named(hard_negatives, negative_count, negatives_skip)
        teaching = TeacherOptions.named(teacher, teacher_mix, teacher_candidates, teacher_pool, mining)
        recipe = Recipe(data=data, columns=(query_column, positive_column, *negative_column), beir=beir,
                        beir_split=beir_split, pairs=pairs, base=base, init_idf=init_idf, continue_from=continue_from,
                        negatives=None if teaching else mining, index=index, validation_queries=validation_queries,
                        eval_beir=eval_beir, teacher=teaching)  # a teacher scores the mined pool: no negatives
        return f(*args, recipe=recipe, **kwargs)

    return options([
        click.option("--data", help="Training rows: .jsonl/.json/.csv/.parquet file, a saved dataset folder, or a hub "
                                    "dataset id."),
        click.option("--query-column", default="query", show_default=True, help="Column with the query (--data)."),
        click.option("--positive-column", default="positive", show_default=True,
                     help="Column with the relevant document (--data)."),
        click.option("--negative-column", multiple=True, help="Column(s) with hard negatives (--data); repeatable."),
        click.option("--beir", type=click.Path(file_okay=False, path_type=Path),
                     help="Build pairs from a BEIR folder: queries + qrels/<split>.tsv, else self-supervised pairs of "
                          "its corpus."),
        click.option("--beir-split", default="train", show_default=True, help="qrels split used with --beir."),
        click.option("--pairs", default="lead", show_default=True, callback=_pair_kinds,
                     help="Self-supervised pairs (--beir without training qrels): lead = the title, or the first words "
                          "-> the rest; ict = a span -> the rest; crop = two independent spans; title = title -> text; "
                          "kinds combine with '+' (lead+ict: a pair of each per document)."),
        click.option("--hard-negatives", type=click.Choice(["none", "bm25", "splade"]), default="none",
                     show_default=True, help="Mine negatives from --index: top BM25 (title+text) or SPLADE hits that "
                                             "are not the positive."),
        click.option("--negatives", "negative_count", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Hard negatives per query."),
        click.option("--negatives-skip", default=MiningOptions.skip, show_default=True, type=click.IntRange(min=0),
                     help="Top hits passed over before negatives are taken (they are often unlabelled positives)."),
        click.option("--teacher", metavar="MODEL",
                     help="Distil a teacher instead of calling mined hits negatives: 'default' (all-MiniLM-L6-v2, the "
                          "teacher extra) or a sentence-transformers bi-encoder folder or hub id. It scores candidates "
                          "mined from --index by --hard-negatives (bm25 when none)."),
        click.option("--teacher-mix", default=TeacherOptions.mix, show_default=True, type=click.FloatRange(0, 1),
                     help="The teacher's share of each label; the rest is the starting model's own score."),
        click.option("--teacher-candidates", default=TeacherOptions.candidates, show_default=True,
                     type=click.IntRange(min=1), help="Scored candidates per training query, drawn from the pool."),
        click.option("--teacher-pool", default=TeacherOptions.pool, show_default=True, type=click.IntRange(min=1),
                     help="Hits mined per training query for the teacher to score."),
        index_option(required=False, help_text="Index to mine negatives from (ingested from the --beir corpus when "
                                               "missing)."),
        click.option("--base", help="Masked-LM folder or hub id to start the document route from (default: the "
                                    "bundled one)."),
        click.option("--init-idf", type=click.Path(dir_okay=False, path_type=Path),
                     help="JSONL corpus whose IDF starts the query table (default: ones)."),
        click.option("--continue-from", help="An inference-free model (any --model form) to continue training."),
        click.option("--validation-queries", default=200, show_default=True, type=click.IntRange(min=0),
                     help="Training queries held out to validate the start and each checkpoint (0: no validation)."),
        click.option("--eval-beir", type=click.Path(file_okay=False, path_type=Path),
                     help="Validate on this BEIR folder's qrels/test.tsv instead of held-out pairs."),
    ])(wrapper)


def trainer_options(f):
    """How the trainer runs -> `args` (a `TrainArgs`)."""

    @functools.wraps(f)
    def wrapper(*args, output, teacher_temperature, lr, static_lr, batch_size, epochs, max_steps, warmup_ratio,
                target_doc_dims, doc_reg, query_reg, seed, precision, max_seq_length, save_steps, eval_steps,
                interpolate, force, resume, **kwargs):
        arguments = TrainArgs(
            output_dir=output, learning_rate=lr, static_learning_rate=static_lr, batch_size=batch_size, epochs=epochs,
            max_steps=max_steps, warmup_ratio=warmup_ratio, document_regularizer_weight=doc_reg,
            target_doc_dims=target_doc_dims, query_regularizer_weight=query_reg, seed=seed, precision=precision,
            max_seq_length=max_seq_length, save_steps=save_steps, eval_steps=eval_steps, force=force, resume=resume,
            distill_temperature=teacher_temperature, interpolation=interpolate)
        return f(*args, args=arguments, **kwargs)

    return options([
        click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Folder for checkpoints; the trained model goes to OUTPUT/final."),
        click.option("--teacher-temperature", default=TrainArgs.distill_temperature, show_default=True,
                     type=click.FloatRange(min=0, min_open=True),
                     help="Temperature of the distillation loss (labels are on the start's score scale)."),
        click.option("--lr", default=2e-5, show_default=True, help="Learning rate of the transformer."),
        click.option("--static-lr", default=1e-3, show_default=True, help="Learning rate of the static query table."),
        click.option("--batch-size", default=16, show_default=True, help="Pairs per batch (in-batch negatives)."),
        click.option("--epochs", default=1.0, show_default=True, help="Passes over the data."),
        click.option("--max-steps", default=-1, show_default=True, help="Stop after this many steps (-1: epochs decide)."),
        click.option("--warmup-ratio", default=0.1, show_default=True, help="Fraction of steps with a rising learning rate."),
        click.option("--target-doc-dims", type=click.FloatRange(min=1), default=None,
                     help="Set the FLOPS weight by feedback so documents end near this many active dimensions "
                          "(default: the start's)."),
        click.option("--doc-reg", type=click.FloatRange(min=0), default=None,
                     help="A fixed FLOPS weight on documents instead (the seed model's was 3e-4), with the trainer's "
                          "warm-up."),
        click.option("--query-reg", default=0.0, show_default=True, help="FLOPS regularizer weight on queries."),
        click.option("--seed", default=42, show_default=True, help="Random seed."),
        click.option("--precision", default="auto", show_default=True,
                     type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="auto: bf16 (or fp16) on GPU, fp32 on CPU."),
        click.option("--max-seq-length", type=int,
                     help="Document truncation while training (the saved model keeps its own)."),
        click.option("--save-steps", default=500, show_default=True, help="Checkpoint every N steps."),
        click.option("--eval-steps", type=int, help="Validate every N steps (default: 4 times, and at the end)."),
        click.option("--interpolate", default=TrainArgs.interpolation, show_default=True,
                     type=click.FloatRange(0, 1, min_open=True),
                     help="Save the start's weights moved only this share of the way to the trained ones (weight "
                          "interpolation; the gate judges the result). 1: as trained."),
        click.option("--force", is_flag=True, help="Save the best trained checkpoint even if it did not beat the start."),
        click.option("--resume", is_flag=True, help="Resume from the last checkpoint in --output."),
    ])(wrapper)


@click.command()
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False, path_type=Path), is_eager=True,
              callback=_read_recipe, expose_value=False,
              help="A TOML recipe ([data], [negatives], [teacher], [trainer] tables of these options; recipes/ has "
                   "the documented ones); options given on the command line override it.")
@recipe_options
@trainer_options
@cluster_options
@json_option("Print a JSON summary of the run instead of the lines of text.")
@handle_errors
def train(recipe, args, cluster, as_json):
    """Train an inference-free SPLADE model; keep it only if it beats the start on held-out queries.

    Exits with status 1 when no checkpoint beat the start (see --force). The options used are saved
    beside the model as recipe.toml (and in its card): `train --recipe` runs it again.

    Example: splade-os train --recipe recipes/cranfield-teacher.toml --epochs 1
    """
    from splade_os.training import trainer as training
    from splade_os.training.recipes import save_recipe

    used = used_recipe(click.get_current_context())
    result = training.run(recipe, args, cluster.connect() if recipe.negatives or recipe.teacher else None,
                          show_progress=not quiet())
    save_recipe(result.model_dir, used)
    if as_json:
        print_json(_train_summary(recipe, args, result))
        return
    click.echo(f"trained {result.steps} steps on {result.pairs} pairs in {result.seconds:.0f} s"
               + (f"; loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}" if result.losses else ""))
    if result.validation:
        start, best = result.validation["start"], result.validation["best"]
        click.echo(f"validation ({result.validation['queries']} queries): ndcg@10 {start['ndcg@10']:.4f} -> "
                   f"{best['ndcg@10']:.4f}, document active dims {start['corpus_active_dims']:.0f} -> "
                   f"{best['corpus_active_dims']:.0f} (step {result.validation['best_step']})")
    click.echo(f"model: {result.model_dir}")


def _train_summary(recipe, args, result) -> dict:
    """What `train --json` prints: the model, the pairs and steps, the time, the gate's verdict."""
    gate = {k: (result.validation or {}).get(k) for k in ("queries", "passed", "best_step", "start", "best")}
    rate = result.steps * args.batch_size / result.seconds if result.seconds > 0 else 0.0
    return {"model": str(result.model_dir), "index": recipe.index, "pairs": result.pairs, "steps": result.steps,
            "seconds": round(result.seconds, 3), "pairs_per_second": round(rate, 2),
            "loss": result.losses[:1] + result.losses[-1:], "validation": gate if result.validation else None,
            "mining": {k: result.mining[k] for k in ("queries", "kept", "seconds") if k in result.mining} or None}


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Registry name (lower-case letters, digits, '.', '_', '-').")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="Version number (default: the next one).")
@cluster_options
@handle_errors
def push(model_dir, name, version, cluster):
    """Store a model folder in the cluster's registry as NAME@VERSION.

    Example: splade-os push ./my-model --name cranfield-splade
    """
    from splade_os.models.registry import push as run_push

    if not model_dir.exists():
        raise click.ClickException(f"{model_dir}: no such model folder")
    meta = run_push(cluster.connect(), model_dir, name, version=version, show_progress=not quiet())
    size = sum(f["size"] for f in meta["files"])
    click.echo(f"pushed {meta['name']}@{meta['version']}: {len(meta['files'])} files, {size / 2**20:.1f} MiB, "
               f"hash {meta['hash'][:12]}")


@click.command()
@click.argument("ref")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write (default: the cache, reused when already pulled).")
@cluster_options
@handle_errors
def pull(ref, output, cluster):
    """Restore NAME[@VERSION] from the cluster's registry, verifying every checksum.

    Example: splade-os pull cranfield-splade@2 -o ./model
    """
    from splade_os.models.registry import pull as run_pull

    click.echo(run_pull(cluster.connect(), ref, dest=output, show_progress=not quiet()))


@click.command()
@click.argument("model")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--layout", type=click.Choice(LAYOUTS), default="opensearch", show_default=True,
              help="opensearch: the masked-LM, tokenizer and idf.json at the root, as OpenSearch publishes its "
                   "doc-only models (sentence-transformers' files beside them).")
@click.option("--overwrite", is_flag=True, help="Replace DIRECTORY when it holds a model already (an earlier export).")
@cluster_options
@handle_errors
def export(model, directory, layout, overwrite, cluster):
    """Write MODEL (any --model form) into DIRECTORY in an engine's own layout, with a model card.

    docs/export.md says how to register the folder with OpenSearch's ml-commons.

    Example: splade-os export runs/cran/final ./cran-opensearch --layout opensearch
    """
    from splade_os.models.export import export_model
    from splade_os.models.resolve import is_registry_ref, resolve_model

    chosen = resolve_model(model, cluster.connect() if is_registry_ref(model) else None, show_progress=not quiet())
    folder = export_model(chosen, directory, layout=layout, overwrite=overwrite)
    files = [p for p in folder.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files) / 2**20
    click.echo(f"exported {chosen.name} to {folder}: {len(files)} files, {size:.1f} MiB ({layout} layout; "
               "README.md says how to use it)")
