"""Shared fixtures: a very small demo world and tiny models, so every stage runs for real in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Config, load_config

SMALL = [
    "data.demo.n_source=12", "data.demo.n_target_train=12", "data.demo.n_target_val=4",
    "data.demo.height=64", "data.demo.width=128", "data.labelled_target=4",
    "caption.shard_size=8", "execution.caption.batch_size=4", "caption.max_new_tokens=4", "execution.caption.concurrency=1",
    "text.shard_size=8", "execution.text.batch_size=8",
    "model.dlg_dim=16", "model.decoder_channels=16",
    "train.iterations=3", "train.batch_size=2", "train.crop_size=64", "execution.train.log_every=1",
    "execution.train.checkpoint_every=2", "execution.train.cpus_per_worker=1",
    "eval.save_predictions=1",
]


def small_overrides(workdir: Path, *extra: str) -> list[str]:
    return [*SMALL, f"paths.workdir={workdir}", *extra]


def in_process(config, t, name, func):
    """``stages.training.fit_on_ray`` without Ray Train: the trainer's own worker function in this process."""
    return func({**config, "use_ray": False})


def evaluate_here(ctx, evaluator, args, items, chunk, unit, fold, label="evaluate"):
    """``stages.evaluation.evaluate_on_ray`` without its Ray actor: the same evaluator, chunks and folds, here."""
    held = evaluator(*args)
    for start in range(0, len(items), chunk):
        fold(held(items[start:start + chunk], start))
    return held.location()


class MappedHere:
    """``pipeline.shards._dataset`` without Ray Data: the same batches through the pool's prepare function and
    one replica of its UDF, in this process."""

    def __init__(self, rows, shards, shard_size, pool) -> None:
        from pipeline.shards import batches

        self.batches, self.pool = batches(rows, shards, shard_size, pool.batch_size), pool

    def iter_batches(self, **_):
        from pipeline.shards import ROW_COLUMN

        udf = self.pool.udf(**self.pool.udf_kwargs)
        for batch in self.batches:
            if self.pool.prepare is not None:
                batch = self.pool.prepare(batch, **(self.pool.prepare_kwargs or {}))
            yield udf(batch.drop_columns([ROW_COLUMN]))


EVALUATORS = ("stages.street.evaluate.evaluator", "stages.synapse.evaluate.evaluator", "stages.street.select")


def run_here(patch: pytest.MonkeyPatch) -> None:
    """Captioning, text embedding, training and evaluation in this process (the grid tests' many short runs): the
    same UDFs, trainer and evaluator as under Ray Data, Ray Train and in a Ray actor, without their start-up for
    each run; the caption, CLI, resume and plug-in tests keep Ray's paths."""
    import pipeline.shards
    import stages.training

    patch.setattr(pipeline.shards, "_dataset", MappedHere)
    patch.setattr(pipeline.shards, "init_ray", lambda *args, **kwargs: None)
    patch.setattr(stages.training, "fit_on_ray", in_process)
    for module in EVALUATORS:
        patch.setattr(f"{module}.evaluate_on_ray", evaluate_here)


@pytest.fixture
def small_config(tmp_path: Path):
    """A function: extra overrides -> a small Config working in tmp_path/work."""

    def make(*extra: str) -> Config:
        return load_config(None, small_overrides(tmp_path / "work", *extra))

    return make


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (starting Ray costs seconds)."""
    import ray

    import pipeline  # noqa: F401  (sets Ray's environment before Ray is imported)

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")  # never a stray cluster
    yield ray
