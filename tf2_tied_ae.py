"""The tied autoencoder of tf1_tied_ae in TensorFlow 2's own idiom: eager, a tf.Module whose decoder
reads the encoder's kernels transposed and keeps its own biases, a tf.function training step, a
Keras optimizer, tf.train.Checkpoint and tf.saved_model. The step after the tf.compat.v1 graph, on
TensorFlow's own migration path (docs/migrating.md); the tests hold it equal to the graph.

    model = TiedAutoEncoder(cfg)                      # cfg: tf1_config.AEConfig, as for the graph
    trainer = Trainer(model)                          # cfg.trainable: what its step may change
    loss = trainer.step(batch)                        # one update, in a tf.function
    model.untie(); trainer = Trainer(model, finetune=True)   # tied-untied's second stage

The same variables, by the graph's names (`variables_by_name`: the one name map), the same shapes,
the same modes (tied, untied, tied-untied) and trainable lists (tf1_config.trainable_names). What
the graph has and this module has not (the regularisers' noise and dropout, the sparse path, lazy
Adam, learning-rate schedules, sync mode, RBM pretraining) is refused by field (ValueError), never
ignored. Initial values: drawn as the graph draws them (cfg.init), or given (`values`, or
`from_tf1_checkpoint`): the same numbers as a graph's ckpt-0.
"""
import tensorflow as tf

from tf1_config import AEConfig, trainable_names, variable_shapes

ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu": tf.nn.relu, "elu": tf.nn.elu, "selu": tf.nn.selu, "tanh": tf.tanh,
               "softplus": tf.nn.softplus, "linear": tf.identity}
GRAPH_ONLY = {  # AEConfig fields whose non-default values only the graph implements, and why
    "mask_noise": "noise is drawn by the graph's counter-based keys", "gaussian_noise": "as mask_noise",
    "code_dropout": "as mask_noise", "hidden_dropout": "as mask_noise", "shift": "as mask_noise",
    "dense_refeed": "a second update a step", "sparse_input": "the sparse path", "warmup_steps": "a schedule",
}


def check(cfg):
    """ValueError naming the first field of cfg this module does not implement."""
    if not isinstance(cfg, AEConfig):
        raise TypeError("takes a tf1_config.AEConfig")
    for field, why in GRAPH_ONLY.items():
        if getattr(cfg, field):
            raise ValueError(f"{field}={getattr(cfg, field)!r} is the graph's alone ({why}): use tf1_tied_ae")
    for field, allowed in (("mode", ("tied", "untied", "tied-untied")), ("optimizer", ("adam", "sgd")),
                           ("lr_schedule", ("constant",))):
        if getattr(cfg, field) not in allowed:
            raise ValueError(f"{field}={getattr(cfg, field)!r} is the graph's alone: here {', '.join(allowed)}")


def _initial(cfg, name, shape, seed):
    """A variable's first value, drawn from cfg.init's distribution (keyed by the seed and the name)."""
    key = tf.constant([seed, sum(ord(c) * 31 ** k for k, c in enumerate(name)) % 2 ** 31], tf.int64)
    if cfg.init == "snippet":
        return tf.random.stateless_normal(shape, key)
    if name.endswith("/bias"):
        return tf.zeros(shape)
    if cfg.init == "he":  # contrib's variance scaling: a truncated normal of stddev sqrt(1.3 * 2 / fan_in)
        return tf.random.stateless_truncated_normal(shape, key) * (2.6 / shape[0]) ** 0.5
    limit = (6.0 / (shape[0] + shape[1])) ** 0.5  # Glorot uniform
    return tf.random.stateless_uniform(shape, key, -limit, limit)


class TiedAutoEncoder(tf.Module):
    """The model: encoder kernels and biases, decoder biases, and decoder kernels unless tied (made
    for tied-untied, and filled at `untie`). values: {graph name: array} of initial values."""

    def __init__(self, cfg, values=None, seed=None):
        super().__init__(name="tied_autoencoder")
        check(cfg)
        self.cfg, self.untied = cfg, cfg.mode == "untied"
        values = values or {}
        seed = cfg.seed if seed is None else seed

        def variable(name, shape):
            start = values[name] if name in values else _initial(cfg, name, shape, seed or 0)
            return tf.Variable(tf.cast(start, tf.float32), name=name.replace("/", "_"))

        shapes, layers = variable_shapes(cfg), len(cfg.dims) - 1
        self.encoder_kernels = [variable(f"encoder/layer_{i}/kernel", shapes[f"encoder/layer_{i}/kernel"])
                                for i in range(layers)]
        self.encoder_biases = [variable(f"encoder/layer_{i}/bias", shapes[f"encoder/layer_{i}/bias"])
                               for i in range(layers)]
        self.decoder_biases = [variable(f"decoder/layer_{j}/bias", shapes[f"decoder/layer_{j}/bias"])
                               for j in range(layers)]
        self.decoder_kernels = [variable(f"decoder/layer_{j}/kernel", shapes[f"decoder/layer_{j}/kernel"])
                                for j in range(layers)] if cfg.mode != "tied" else []

    def variables_by_name(self):
        """{graph name: tf.Variable}: the one map between this model and tf1_tied_ae's checkpoints."""
        named = {}
        for i, (w, b) in enumerate(zip(self.encoder_kernels, self.encoder_biases)):
            named[f"encoder/layer_{i}/kernel"], named[f"encoder/layer_{i}/bias"] = w, b
        for j, b in enumerate(self.decoder_biases):
            named[f"decoder/layer_{j}/bias"] = b
        for j, w in enumerate(self.decoder_kernels):
            named[f"decoder/layer_{j}/kernel"] = w
        return named

    def encode(self, x):
        """x [batch, dims[0]] -> code [batch, dims[-1]]."""
        h, last = x, len(self.encoder_kernels) - 1
        for i, (w, b) in enumerate(zip(self.encoder_kernels, self.encoder_biases)):
            h = ACTIVATIONS[self.cfg.code_activation if i == last else self.cfg.activation](tf.matmul(h, w) + b)
        return h

    def decode(self, code):
        """code -> (logits, reconstruction). Tied: decoder layer j multiplies by the transpose of
        encoder layer L-1-j, read in place (transpose_b), so the gradient reaching an encoder kernel
        sums both paths; untied: the decoder's own kernels."""
        g, n = code, len(self.decoder_biases)
        for j, b in enumerate(self.decoder_biases):
            if self.untied:
                g = tf.matmul(g, self.decoder_kernels[j]) + b
            else:
                g = tf.matmul(g, self.encoder_kernels[n - 1 - j], transpose_b=True) + b
            if j < n - 1:
                g = ACTIVATIONS[self.cfg.activation](g)
        return g, ACTIVATIONS[self.cfg.output_activation](g)

    def __call__(self, x):
        return self.decode(self.encode(x))[1]

    def losses(self, x):
        """(the loss, each example's sum of squared errors): mse, xent on the logits, or masked_mse."""
        logits, recon = self.decode(self.encode(x))
        squared = tf.math.squared_difference(x, recon)
        if self.cfg.loss == "masked_mse":
            observed = tf.cast(tf.not_equal(x, 0.0), tf.float32)
            squared = squared * observed
            loss = tf.reduce_sum(squared) / tf.maximum(tf.reduce_sum(observed), 1.0)
        elif self.cfg.loss == "mse":
            loss = tf.reduce_mean(squared)
        else:
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits))
        return loss, tf.reduce_sum(squared, axis=1)

    def untie(self):
        """tied-untied's switch: the decoder kernels take the encoder's transposes, and decode with them."""
        if self.cfg.mode != "tied-untied":
            raise ValueError(f"untie belongs to mode tied-untied; this model is {self.cfg.mode}")
        n = len(self.decoder_kernels)
        for j, w in enumerate(self.decoder_kernels):
            w.assign(tf.transpose(self.encoder_kernels[n - 1 - j]))
        self.untied = True


class Trainer(tf.Module):
    """The step of one stage: cfg's optimizer (Keras's Adam with TF 1.x's epsilon, 1e-8, or SGD) on
    exactly the variables cfg.trainable allows (finetune: tied-untied's untied stage, which has an
    optimizer of its own, as the graph's finetune head has), the weight decay in the objective."""

    def __init__(self, model, finetune=False):
        super().__init__(name="finetune" if finetune else "train")
        cfg, named, names = model.cfg, model.variables_by_name(), trainable_names(model.cfg, finetune=finetune)
        self.model = model
        self.var_list = [named[n] for n in names]
        self.kernels = [named[n] for n in names if n.endswith("/kernel")]  # each decayed once, as in the graph
        self.optimizer = tf.keras.optimizers.Adam(cfg.learning_rate, epsilon=1e-8) if cfg.optimizer == "adam" else \
            tf.keras.optimizers.SGD(cfg.learning_rate)

    def objective(self, x):
        loss, _ = self.model.losses(x)
        if not self.model.cfg.weight_decay:
            return loss, loss
        return loss, loss + self.model.cfg.weight_decay * tf.add_n([tf.nn.l2_loss(w) for w in self.kernels])

    @tf.function
    def step(self, x):
        """One update on the batch x; returns the loss before it (as sess.run([loss, train_op]) does)."""
        with tf.GradientTape() as tape:
            loss, objective = self.objective(x)
        self.optimizer.apply_gradients(zip(tape.gradient(objective, self.var_list), self.var_list))
        return loss


def from_tf1_checkpoint(cfg, path, untied=None):
    """The model with the values a tf1_tied_ae checkpoint (a train.py run's, say) holds, under the
    graph's names; untied: decode with the decoder's kernels (tied-untied after its untie)."""
    reader = tf.train.load_checkpoint(path)
    model = TiedAutoEncoder(cfg, {name: reader.get_tensor(name) for name in variable_shapes(cfg)})
    if untied is not None:
        model.untied = untied
    return model


def checkpoint_keys(model, root="model"):
    """{key in tf.train.Checkpoint(model=model)'s files: the graph's name}: an init_map for
    tf1_tied_ae.build(init_from=...), which takes a TF 2 checkpoint back into the graph."""
    attribute = {"encoder_kernels": "encoder/layer_{}/kernel", "encoder_biases": "encoder/layer_{}/bias",
                 "decoder_biases": "decoder/layer_{}/bias", "decoder_kernels": "decoder/layer_{}/kernel"}
    return {f"{root}/{attr}/{k}/.ATTRIBUTES/VARIABLE_VALUE": name.format(k)
            for attr, name in attribute.items() for k in range(len(getattr(model, attr)))}


def export(model, path):
    """A TF 2 SavedModel with the signatures of the TF1 export (tae_export): `encode` (x -> code),
    `reconstruct` (x -> reconstruction), the default serving signature `reconstruct`; input `x`
    [None, dims[0]] float32."""
    spec = tf.TensorSpec([None, model.cfg.dims[0]], tf.float32, name="x")
    encode = tf.function(lambda x: {"code": model.encode(x)}, input_signature=[spec])
    reconstruct = tf.function(lambda x: {"reconstruction": model(x)}, input_signature=[spec])
    tf.saved_model.save(model, path, signatures={"encode": encode, "reconstruct": reconstruct,
                                                 "serving_default": reconstruct})
    return path
