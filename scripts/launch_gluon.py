"""Start a Gluon train script in several processes on this machine through MXNet's own
``dist_sync`` kvstore (ps-lite): one scheduler, ``-s`` servers and ``-n`` workers, each a
process with the ``DMLC_*`` variables of its role; then wait for the workers and return
their exit status (the first that failed; the others are stopped then).

    python -m scripts.launch_gluon -n 2 -m gluon_impl.train_san --batch-size 64 ...

The script gets ``--kvstore dist_sync`` (added when its flags do not name a kvstore):
worker ``kv.rank`` of ``kv.num_workers`` takes its share of every ``--batch-size`` batch,
the servers sum the gradients, worker 0 alone writes the run folder. Without
``OMP_NUM_THREADS`` set, each worker gets an equal share of this machine's cores. Before
starting, the launcher prints how to run the same job on several hosts: there, as MXNet
intends, one worker per host splits its batches across the host's GPUs (``--ctx``, by
default every GPU it sees), and ``--log-dir`` must be a folder every worker reads
(``--resume`` reads it on each).
"""
import argparse
import os
import shlex
import socket
import subprocess
import sys
import time

from common import USER_OMP_THREADS, runs

SERVER = (sys.executable, "-c", "import mxnet")  # importing MXNet runs a scheduler or server role


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def several_hosts(module, script_args, servers, workers):
    """How to run the job on several hosts, as text."""
    command = shlex.join(["python", "-m", module, *script_args])
    common = (f"DMLC_PS_ROOT_URI=<scheduler host> DMLC_PS_ROOT_PORT=9091 DMLC_NUM_SERVER={servers} "
              f"DMLC_NUM_WORKER={workers} DMLC_NODE_HOST=<this host's address>")
    return "\n".join([
        "on several hosts, from this repository on each, with the same variables everywhere:",
        f"  scheduler (one host):  {common} DMLC_ROLE=scheduler python -c 'import mxnet'",
        f"  each of {servers} server(s):  {common} DMLC_ROLE=server python -c 'import mxnet'",
        f"  each of {workers} worker(s):  {common} DMLC_ROLE=worker {command}",
        "  or, with one worker host per line in a file hosts.txt (ssh without password):",
        f"  while read h; do ssh -n $h \"cd $PWD && {common.replace('<this host', '<$h')} "
        f"DMLC_ROLE=worker {command}\" & done < hosts.txt; wait",
    ])


def parse_args(argv=None):
    """The launcher's flags, then ``-m MODULE`` and the script's flags, as they come."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=runs.HelpFormatter,
        usage="python -m scripts.launch_gluon [-n N] [-s S] [--port P] -m MODULE [script flags]")
    parser.add_argument("-n", "--num-workers", type=int, default=2, help="worker processes")
    parser.add_argument("-s", "--num-servers", type=int, default=1, help="server processes")
    parser.add_argument("--port", type=int, default=None,
                        help="the scheduler's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("-m", dest="module", required=True,
                        help="the train script's module; the flags after it are the script's")
    cut = argv.index("-m") + 2 if "-m" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.script_args = argv[cut:]
    if args.num_workers < 1 or args.num_servers < 1:
        parser.error("-n and -s must be at least 1")
    if not any(a == "--kvstore" or a.startswith("--kvstore=") for a in args.script_args):
        args.script_args += ["--kvstore", "dist_sync"]
    return args


def main(argv=None):
    args = parse_args(argv)
    print(several_hosts(args.module, args.script_args, args.num_servers, args.num_workers),
          flush=True)
    base = runs.child_environment(
        DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(args.port or free_port()),
        DMLC_NODE_HOST="127.0.0.1", DMLC_NUM_SERVER=str(args.num_servers),
        DMLC_NUM_WORKER=str(args.num_workers))
    threads = USER_OMP_THREADS or str(max(1, len(os.sched_getaffinity(0)) // args.num_workers))
    roles = [subprocess.Popen(SERVER, env=dict(base, DMLC_ROLE=role, OMP_NUM_THREADS="1"))
             for role in ["scheduler"] + ["server"] * args.num_servers]
    workers = [subprocess.Popen([sys.executable, "-m", args.module, *args.script_args],
                                env=dict(base, DMLC_ROLE="worker", OMP_NUM_THREADS=threads))
               for _ in range(args.num_workers)]
    status = 1
    try:
        status = wait_for(workers)
    finally:  # after a failure (or an interrupt) the others would wait for ever: stop them
        for process in workers + roles:
            stop(process, 30 if status == 0 else 0)
    return status


def wait_for(workers):
    """The workers' exit status: 0 when all succeed, else the first failure's, at once."""
    while True:
        codes = [w.poll() for w in workers]
        failed = [c for c in codes if c]
        if failed or all(c == 0 for c in codes):
            return failed[0] if failed else 0
        time.sleep(0.2)


def stop(process, grace):
    """Wait ``grace`` seconds for one of our processes, then kill it."""
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":
    sys.exit(main())
