"""A command's own peak resident memory, for the benchmarks that report train.py's.

A child's ru_maxrss counts the peak of the process it was spawned from: Linux records the old
address space's high-water mark at exec, and Python spawns with vfork. Spawned straight from a
benchmark that has held a data set, train.py would report the benchmark's peak whenever that is
the higher. So a small launcher (a fresh interpreter that holds nothing) spawns the command and
reports the peak of the command alone, read with wait4.
"""
import os
import subprocess
import sys
import tempfile

LAUNCH = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, s, u = os.wait4(p.pid, 0); "
          "open(sys.argv[1], 'w').write(str(u.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(s))")


def run(cmd, **kwargs):
    """subprocess.run(cmd, **kwargs) through the launcher: (CompletedProcess, the command's peak RSS
    in MiB, None if it did not get as far as reporting one)."""
    with tempfile.TemporaryDirectory() as scratch:
        peak = os.path.join(scratch, "peak_rss_kib")
        p = subprocess.run([sys.executable, "-c", LAUNCH, peak, *map(str, cmd)], **kwargs)
        mib = int(open(peak).read()) / 1024 if os.path.exists(peak) else None
    return p, mib
