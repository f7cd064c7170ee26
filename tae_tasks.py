"""The kinds of data train.py trains on, one Task each, chosen once from --dataset by `task_of`:
the one place that asks which kind a run is.

A Task (tae_task_images.ImagesTask, tae_task_ratings.RatingsTask) has a `name`, the `uses` of a
trained run it answers (--encode, --recommend...), and: handles(dataset), load(model, model_values,
run) -> (model, run, data), record(data) (its part of config.json), graph_input(data) -> (what the
graph holds, examples, nnz), release(data), baselines(model, data), scoring(model, data, baselines)
(the epoch's figures, the final line, the figures of the run folder), compare_table(data, baselines),
refuse_use(out, saved, whats, recommend). A third kind is a module with such a class and a line in
TASKS.
"""
from tae_task_images import ImagesTask
from tae_task_ratings import RatingsTask

TASKS = (RatingsTask, ImagesTask)  # the first that handles a --dataset takes it (images: any other)


def task_of(dataset):
    """The Task of a --dataset value (a RunConfig's dataset)."""
    return next(task for task in TASKS if task.handles(dataset))
