"""A multi-node launch as a cluster does it: one ``recipes.train`` process per node, told its place by
``MASTER_ADDR``, ``MASTER_PORT`` and ``NODE_RANK``, here two "nodes" of one CPU process each on
127.0.0.1 (gloo), sharing one run folder as nodes share a network filesystem."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NODES = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_args(manifest: Path, output: Path) -> list:
    """The training command every node runs, the same on each."""
    return ["-m", "recipes.train", "codec", "--smoke", "--output", str(output), "--accelerator", "cpu",
            "--devices", "1", "--num-nodes", str(NODES), "--strategy", "ddp", "--set", f"data.manifest={manifest}"]


def node_command(launcher: str, rank: int, port: int, manifest: Path, output: Path) -> tuple:
    """Node ``rank``'s command line and the variables it adds to the environment."""
    if launcher == "env":  # what a cluster scheduler sets
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(rank)}
        return [sys.executable, *train_args(manifest, output)], env
    torchrun = ["-m", "torch.distributed.run", "--nnodes", str(NODES), "--nproc-per-node", "1",
                "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port)]
    return [sys.executable, *torchrun, *train_args(manifest, output)], {}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["env", "torchrun"])
def test_two_nodes_of_one_process_train_in_sync(launcher, tiny_corpus, tmp_path):
    output, port = tmp_path / "run", free_port()
    base = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "RANK", "WORLD_SIZE", "GROUP_RANK"):
        base.pop(name, None)  # only the launch under test places the processes
    nodes, logs = [], [tmp_path / f"node{rank}.log" for rank in range(NODES)]
    for rank in range(NODES):
        command, env = node_command(launcher, rank, port, tiny_corpus, output)
        with logs[rank].open("w") as log:  # files, not pipes: a full pipe would stall a node mid-collective
            nodes.append(subprocess.Popen(command, cwd=ROOT, env={**base, **env}, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 150
    try:
        for node in nodes:
            node.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for node in nodes:  # a node left waiting for its peer (torchrun's worker too) must not outlive the test
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    for rank, node in enumerate(nodes):
        assert node.returncode == 0, f"node {rank}:\n{logs[rank].read_text()[-3000:]}"
    report = json.loads((output / "replicas.json").read_text())
    assert report["world_size"] == NODES and report["in_sync"], report
    state = torch.load(output / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4  # the smoke recipe's max_steps, counted once across nodes
    assert (output / "best" / "model.safetensors").is_file()
