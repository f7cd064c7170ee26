"""A tied-weight denoising autoencoder on MNIST, written the way TensorFlow 1.4 code was in 2017.

Kept as it was for docs/porting.md, which ports it onto tf1_tied_ae (tied_ae_ported.py beside it);
it does not run on TensorFlow 2 (tf.contrib, the tutorials' reader and tf.app are gone). The
decoder is the transpose of the encoder; the code layer is linear; masking noise is dropout with
its scaling undone; the loss is the cross-entropy plus the L2 regularisation the variables carry.

    python tied_ae_2017.py --epochs 10 --keep_prob 0.95
"""
import tensorflow as tf
from tensorflow.examples.tutorials.mnist import input_data

flags = tf.app.flags
flags.DEFINE_integer("epochs", 10, "passes over the training images")
flags.DEFINE_integer("batch_size", 100, "images per step")
flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate")
flags.DEFINE_float("keep_prob", 0.95, "the fraction of input pixels kept (masking noise)")
flags.DEFINE_float("l2", 1e-4, "L2 regularisation of the weights")
flags.DEFINE_string("data_dir", "MNIST_data", "where input_data keeps MNIST")
flags.DEFINE_string("save_path", "/tmp/tied_ae/model.ckpt", "the checkpoint")
FLAGS = flags.FLAGS


def model(x, keep_prob):
    he = tf.contrib.layers.variance_scaling_initializer()
    l2 = tf.contrib.layers.l2_regularizer(FLAGS.l2)
    W1 = tf.get_variable("W1", [784, 256], initializer=he, regularizer=l2)
    b1 = tf.get_variable("b1", [256], initializer=tf.zeros_initializer())
    W2 = tf.get_variable("W2", [256, 64], initializer=he, regularizer=l2)
    b2 = tf.get_variable("b2", [64], initializer=tf.zeros_initializer())
    b3 = tf.get_variable("b3", [256], initializer=tf.zeros_initializer())
    b4 = tf.get_variable("b4", [784], initializer=tf.zeros_initializer())
    noisy = tf.nn.dropout(x, keep_prob) * keep_prob  # masking noise: dropped pixels are 0, kept ones unscaled
    h1 = tf.nn.elu(tf.matmul(noisy, W1) + b1)
    code = tf.matmul(h1, W2) + b2
    h3 = tf.nn.elu(tf.matmul(code, tf.transpose(W2)) + b3)
    logits = tf.matmul(h3, tf.transpose(W1)) + b4
    return code, logits


def main(_):
    mnist = input_data.read_data_sets(FLAGS.data_dir)
    x = tf.placeholder(tf.float32, [None, 784])
    keep_prob = tf.placeholder(tf.float32)
    code, logits = model(x, keep_prob)
    xent = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits))
    loss = xent + tf.losses.get_regularization_loss()
    train_op = tf.train.AdamOptimizer(FLAGS.learning_rate).minimize(loss)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for epoch in range(FLAGS.epochs):
            for _ in range(mnist.train.num_examples // FLAGS.batch_size):
                images, _ = mnist.train.next_batch(FLAGS.batch_size)
                sess.run(train_op, {x: images, keep_prob: FLAGS.keep_prob})
            test_xent = sess.run(xent, {x: mnist.test.images, keep_prob: 1.0})
            print("epoch %d: test cross-entropy %.4f" % (epoch + 1, test_xent))
        saver.save(sess, FLAGS.save_path)


if __name__ == "__main__":
    tf.app.run()
