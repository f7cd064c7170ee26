"""Starting a model from a checkpoint another code base wrote, under its own variable names: TF1's
tf.compat.v1.train.init_from_checkpoint with an assignment map {name in the checkpoint: name in the
model}, checked first, so that a name the checkpoint lacks or a shape that differs is one
ValueError naming the variable (TensorFlow's own errors name the checkpoint's internals).

    mapping = {"Variable": "encoder/layer_0/kernel", "Variable_1": "encoder/layer_0/bias", ...}
    ae = tf1_tied_ae.build(cfg, init_from="old/model.ckpt-5000", init_map=mapping)
    sess.run(ae.init_op)   # those variables now hold the checkpoint's values; the others their initializers

A train.py run's checkpoint (or any written with the model's names) needs no map. TF 1.15's API.
"""
import os

import tensorflow as tf

tf1 = tf.compat.v1


def checkpoint_of(path):
    """A checkpoint prefix: `path` itself, or the newest checkpoint in the folder `path`."""
    if os.path.isdir(path):
        newest = tf1.train.latest_checkpoint(path)
        if newest is None:
            raise ValueError(f"{path} is a folder with no checkpoint state file (`checkpoint`); give a checkpoint's "
                             "prefix, like DIR/model.ckpt-1000")
        return newest
    return path


def assignment(path, shapes, mapping=None):
    """The map {checkpoint name: model name} for `path`, checked against the model's variables
    `shapes` ({name: shape}: tf1_config.variable_shapes). mapping None: every model variable under
    its own name. ValueError names the first name or shape that does not fit."""
    try:
        stored = dict(tf1.train.list_variables(checkpoint_of(path)))
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"cannot read a checkpoint at {path} ({type(e).__name__}); give a checkpoint's prefix "
                         "(the part before .index) or its folder") from None
    mapping = dict(mapping) if mapping is not None else {name: name for name in shapes}
    for old, new in mapping.items():
        if new not in shapes:
            raise ValueError(f"the map names {new!r} for {old!r}, and the model has no such variable (it has "
                             f"{', '.join(shapes)})")
        if old not in stored:
            raise ValueError(f"the checkpoint {path} holds no {old!r} (for the model's {new}); map the model's "
                             "variables to the names it holds (tf.train.list_variables lists them)")
        if tuple(stored[old]) != tuple(shapes[new]):
            raise ValueError(f"the checkpoint's {old!r} is {list(stored[old])}, the model's {new} "
                             f"{list(shapes[new])}; map a variable of the model's shape")
    return mapping


def init_from(path, mapping, variables):
    """Make the mapped `variables` ({model name: tf.Variable}) start from the checkpoint's values:
    their initializers read it (call before the graph's init op is made; run that op as usual)."""
    tf1.train.init_from_checkpoint(checkpoint_of(path), {old: variables[new] for old, new in mapping.items()})
