"""The run's TensorBoard events file, written through TensorFlow's own summary writer, with its
failures (a full disk) surfaced where they belong: at the epoch they happen in, in one line."""
import os
import threading

import tensorflow as tf

import tae_files
from tae_files import WriteFailed

tf1 = tf.compat.v1


class Events:
    """The run's TensorBoard events file (tf1.summary.FileWriter), every failure as WriteFailed.

    The FileWriter writes from a thread of its own, and a failed write there (a full disk) kills
    the thread, which logs it and prints a traceback; the writer re-raises it at the next flush or
    close. So the runner flushes after every epoch (the failure surfaces at an epoch's end, after its
    checkpoint), and the thread's own report is held back: WriteFailed says it in one line."""

    THREAD = "EventLoggerThread"  # the FileWriter's thread (tensorflow/python/summary/writer)

    def __init__(self, folder, graph):
        self.folder, self.writer = folder, None
        self.hook, threading.excepthook = threading.excepthook, self._thread_error
        tf.get_logger().addFilter(self._log_filter)
        try:
            self.writer = self._guard(tf1.summary.FileWriter, folder, graph)
        except WriteFailed:
            self.close()  # puts the hook and the filter back
            raise

    def _thread_error(self, args):
        if args.thread is None or args.thread.name != self.THREAD:
            self.hook(args)

    @staticmethod
    def _log_filter(record):
        return not record.getMessage().startswith("EventFileWriter writer thread error")

    def _guard(self, call, *args):
        try:
            return call(*args)
        except Exception as e:  # the writer raises whatever its C++ status maps to (IndexError for EFBIG)
            path, reason = tae_files.failure(e, os.path.join(self.folder, "events.out.tfevents.*"))
            raise WriteFailed(path, reason) from None

    def add(self, summary, step):
        self._guard(self.writer.add_summary, summary, step)

    def flush(self):
        self._guard(self.writer.flush)

    def close(self, quiet=False):
        """Flush and close; quiet: swallow a failure (another one is being reported)."""
        try:
            if self.writer is not None:
                self._guard(self.writer.close)
        except WriteFailed:
            if not quiet:
                raise
        finally:
            threading.excepthook = self.hook
            tf.get_logger().removeFilter(self._log_filter)
