"""The kinds of data train.py trains on, one Task each: a module with such a class and an entry
here makes a third kind. A process chooses its task once (`task_of`) and hands it along.

A Task (tae_task_images.ImagesTask, tae_task_ratings.RatingsTask) has a `name`, the `presets` that
apply to it, and: handles(dataset), model_values(given flags) (AEConfig's fields, the task's
defaults where no flag is given), load(model, model_values, run) -> (model, run, data),
record(data) (its part of config.json), graph_input(data) -> (what the graph holds, examples,
build's keywords), release(data), baselines(model, data), scoring(model, data, baselines) (the
epoch's figures, the final line, the run folder's figures), compare_table(data, baselines),
read_rows(path, width, data_range) where it takes arrays, refuse_use(out, saved, whats, recommend).
"""
from tae_task_images import ImagesTask
from tae_task_ratings import RatingsTask

TASKS = (RatingsTask, ImagesTask)  # the first that handles a --dataset takes it (images: any other)


def task_of(dataset):
    """The Task of a --dataset value: the one place that asks which kind of data a run is."""
    return next(task for task in TASKS if task.handles(dataset))
