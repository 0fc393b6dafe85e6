"""Replica processes as the local backend starts them: real KServe model servers on 127.0.0.1.

Each test binds a socket to 127.0.0.1:0, hands its descriptor to
``python -m zeroserve.serving.runtimes.server``, and talks HTTP to it as the gateway would.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from models import (
    IRIS_ROWS,
    train_iris_lightgbm,
    train_iris_onnx,
    train_iris_sklearn,
    train_iris_torchscript,
    train_iris_xgboost,
)

from zeroserve.errors import ModelLoadFailed
from zeroserve.serving.runtimes import load_runtime

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
SETOSA = [5.1, 3.5, 1.4, 0.2]


def replica_command(model_format: str, name: str, model_dir: Path, fd: int) -> list[str]:
    return [
        sys.executable, "-m", "zeroserve.serving.runtimes.server",
        "--model-format", model_format, "--model-name", name, "--model-dir", str(model_dir),
        "--listen-fd", str(fd),
    ]  # fmt: skip


@dataclass
class Replica:
    process: subprocess.Popen
    port: int
    log_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return (self.log_dir / "stderr").read_text()

    def wait_ready(self) -> float:
        return wait_ready(self.url, lambda: self.process.poll() is None, lambda: self.stderr)


def wait_ready(url: str, alive: Callable[[], bool], stderr: Callable[[], str]) -> float:
    """Seconds until ``url/v2/health/ready`` answered 200; fails the test if the replica died first."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if not alive():
            pytest.fail(f"replica exited before it was ready:\n{stderr()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass  # not listening yet: the model is still loading
        time.sleep(0.02)
    pytest.fail(f"replica not ready after {READY_TIMEOUT_S} s:\n{stderr()}")


def start_replica(model_format: str, name: str, model_dir: Path, log_dir: Path) -> Replica:
    log_dir.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        with open(log_dir / "stdout", "wb") as stdout, open(log_dir / "stderr", "wb") as stderr:
            process = subprocess.Popen(
                replica_command(model_format, name, model_dir, sock.fileno()),
                pass_fds=[sock.fileno()], cwd=REPO, stdout=stdout, stderr=stderr,
            )  # fmt: skip
        return Replica(process, sock.getsockname()[1], log_dir)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Callable[[str, str, Path], Replica]]:
    started: list[Replica] = []

    def start(model_format: str, name: str, model_dir: Path) -> Replica:
        replica = start_replica(model_format, name, model_dir, tmp_path / f"logs-{len(started)}")
        started.append(replica)
        return replica

    yield start
    for replica in started:
        stop(replica.process)


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket that process ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            host, port = local.split(":")
            raw = bytes.fromhex(host)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            found.add((str(ipaddress.ip_address(raw)), int(port, 16)))
    return found


# What the control plane may import without paying for kserve.


def test_importing_runtimes_does_not_import_kserve():
    check = "import sys, zeroserve.serving.runtimes as r; print(sorted(r.RUNTIMES)); print('kserve' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    formats = "['custom', 'huggingface', 'lightgbm', 'onnx', 'pytorch', 'sklearn', 'xgboost']"
    assert out.stdout.split("\n")[:2] == [formats, "False"]


def test_unknown_format_names_the_known_ones():
    with pytest.raises(ModelLoadFailed) as failure:
        load_runtime("tensorflow")
    assert failure.value.reason == "ModelLoadFailed"
    assert "unknown model format 'tensorflow'" in str(failure.value)
    assert "onnx, pytorch, sklearn" in str(failure.value)


def test_a_pytorch_model_directory_may_be_a_triton_model_repository_whose_newest_version_serves(tmp_path):
    from zeroserve.serving.runtimes.pytorch import model_file

    for version in ("1", "2", "10"):
        (tmp_path / "iris" / version).mkdir(parents=True)
        (tmp_path / "iris" / version / "model.pt").write_bytes(b"")
    (tmp_path / "iris" / "config.pbtxt").write_text('platform: "pytorch_libtorch"')
    assert model_file(tmp_path) == tmp_path / "iris" / "10" / "model.pt"
    (tmp_path / "model.pt").write_bytes(b"")
    assert model_file(tmp_path) == tmp_path / "model.pt"


# Real replica processes.


@pytest.mark.slow
def test_sklearn_replica_answers_v1_and_v2_like_the_model_itself(replicas, tmp_path):
    model_dir = train_iris_sklearn(tmp_path / "iris")
    estimator = joblib.load(model_dir / "model.joblib")
    replica = replicas("sklearn", "iris", model_dir)
    replica.wait_ready()

    v1 = httpx.post(f"{replica.url}/v1/models/iris:predict", json={"instances": IRIS_ROWS}, timeout=10)
    assert v1.status_code == 200
    assert v1.json() == {"predictions": estimator.predict(IRIS_ROWS).tolist()}
    assert len(v1.json()["predictions"]) == 2

    rows = [*IRIS_ROWS, SETOSA]
    v2_request = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": sum(rows, [])}]}
    v2 = httpx.post(f"{replica.url}/v2/models/iris/infer", json=v2_request, timeout=10)
    assert v2.status_code == 200
    body = v2.json()
    assert body["model_name"] == "iris"
    [output] = body["outputs"]
    assert output["shape"] == [3]
    assert output["data"] == estimator.predict(rows).tolist()
    assert output["data"][2] == 0  # setosa: the rows are really told apart

    metadata = httpx.get(f"{replica.url}/v2/models/iris", timeout=10)
    assert metadata.status_code == 200 and metadata.json()["name"] == "iris"


@pytest.mark.slow
def test_sklearn_replica_rejects_malformed_input_with_400(replicas, tmp_path):
    replica = replicas("sklearn", "iris", train_iris_sklearn(tmp_path / "iris"))
    replica.wait_ready()

    wrong_width = httpx.post(
        f"{replica.url}/v1/models/iris:predict", json={"instances": [[1.0, 2.0]]}, timeout=10
    )
    assert wrong_width.status_code == 400
    assert "features" in wrong_width.json()["error"]


@pytest.mark.slow
def test_onnx_replica_answers_v1_and_v2_like_onnxruntime(replicas, tmp_path):
    import onnxruntime

    model_dir = train_iris_onnx(tmp_path / "iris-onnx")
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    rows = [*IRIS_ROWS, SETOSA]
    labels, probabilities = session.run(None, {"input": np.array(rows, dtype=np.float32)})
    replica = replicas("onnx", "iris-onnx", model_dir)
    replica.wait_ready()

    v1 = httpx.post(f"{replica.url}/v1/models/iris-onnx:predict", json={"instances": IRIS_ROWS}, timeout=10)
    assert v1.status_code == 200
    assert v1.json() == {"predictions": labels[:2].tolist()}

    v2_request = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": sum(rows, [])}]}
    v2 = httpx.post(f"{replica.url}/v2/models/iris-onnx/infer", json=v2_request, timeout=10)
    assert v2.status_code == 200
    outputs = {output["name"]: output for output in v2.json()["outputs"]}
    assert outputs["label"]["data"] == labels.tolist() == [1, 1, 0]
    assert outputs["label"]["datatype"] == "INT64"
    assert outputs["probabilities"]["shape"] == [3, 3]
    assert np.allclose(outputs["probabilities"]["data"], probabilities.ravel())

    metadata = httpx.get(f"{replica.url}/v2/models/iris-onnx", timeout=10).json()
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [output["name"] for output in metadata["outputs"]] == ["label", "probabilities"]


def answers_v1_and_v2_as_expected(url: str, rows: list[list[float]], expected: np.ndarray, name: str,
                                  datatype: str) -> dict:
    """The replica at ``url`` answers V1 (the iris rows) and V2 (``rows`` as one input) as ``expected``
    says, row by row: its V2 output."""
    v1 = httpx.post(f"{url}/v1/models/iris:predict", json={"instances": IRIS_ROWS}, timeout=10)
    assert v1.status_code == 200, v1.text
    assert np.allclose(v1.json()["predictions"], expected[:len(IRIS_ROWS)], atol=1e-6)
    v2_request = {"inputs": [{"name": name, "shape": [len(rows), 4], "datatype": datatype, "data": sum(rows, [])}]}
    v2 = httpx.post(f"{url}/v2/models/iris/infer", json=v2_request, timeout=10)
    assert v2.status_code == 200, v2.text
    [output] = v2.json()["outputs"]
    assert np.allclose(output["data"], expected.ravel(), atol=1e-6)
    return dict(output)


@pytest.mark.slow
@pytest.mark.parametrize("model_format", ["xgboost", "lightgbm"])
def test_boosted_tree_replicas_answer_v1_and_v2_like_the_library_itself(replicas, tmp_path, model_format):
    import lightgbm
    import xgboost

    train = {"xgboost": train_iris_xgboost, "lightgbm": train_iris_lightgbm}[model_format]
    model_dir = train(tmp_path / model_format)
    rows = [*IRIS_ROWS, SETOSA]
    if model_format == "xgboost":
        expected = xgboost.Booster(model_file=str(model_dir / "model.json")).predict(
            xgboost.DMatrix(np.array(rows, dtype=np.float32)))
    else:
        expected = lightgbm.Booster(model_file=str(model_dir / "model.bst")).predict(np.array(rows))
    assert expected.shape == (3, 3) and expected.argmax(axis=1).tolist() == [1, 1, 0]
    replica = replicas(model_format, "iris", model_dir)
    replica.wait_ready()

    output = answers_v1_and_v2_as_expected(replica.url, rows, expected, "input-0", "FP64")
    assert output["shape"] == [3, 3]

    wrong_width = httpx.post(f"{replica.url}/v1/models/iris:predict", json={"instances": [[1.0, 2.0]]}, timeout=10)
    assert wrong_width.status_code == 400, wrong_width.text
    assert "4" in wrong_width.json()["error"]  # the width the model takes


@pytest.mark.slow
@pytest.mark.parametrize("model_format", ["xgboost", "lightgbm"])
def test_a_file_that_is_no_booster_exits_3_with_the_librarys_message(tmp_path, model_format):
    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    (model_dir / "model.bst").write_bytes(b"this is not a booster")
    result = start_that_fails(model_format, "broken", model_dir)
    assert result.returncode == 3
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ModelLoadFailed: cannot load ") and "model.bst" in last_line
    assert ("XGBoostError" if model_format == "xgboost" else "LightGBMError") in last_line
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_torchscript_replica_answers_v1_and_v2_like_the_program_and_refuses_a_wrong_shape_with_torchs_message(
        replicas, tmp_path):
    import torch

    model_dir = train_iris_torchscript(tmp_path / "iris-torch")
    rows = [*IRIS_ROWS, SETOSA]
    expected = torch.jit.load(str(model_dir / "model.pt"))(torch.tensor(rows)).detach().numpy()
    assert expected.argmax(axis=1).tolist() == [1, 1, 0]
    replica = replicas("pytorch", "iris", model_dir)
    replica.wait_ready()

    output = answers_v1_and_v2_as_expected(replica.url, rows, expected, "x", "FP32")
    assert (output["shape"], output["datatype"]) == ([3, 3], "FP32")

    wrong_width = httpx.post(f"{replica.url}/v1/models/iris:predict", json={"instances": [[1.0, 2.0]]}, timeout=10)
    assert wrong_width.status_code == 400, wrong_width.text
    assert wrong_width.json()["error"] == "RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x2 and 4x16)"
    wrong_type = httpx.post(f"{replica.url}/v2/models/iris/infer", timeout=10, json={
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": SETOSA}]})
    assert wrong_type.status_code == 400, wrong_type.text
    assert "must have the same dtype" in wrong_type.json()["error"]


@pytest.mark.slow
def test_a_torch_saved_module_is_no_torchscript_program_and_exits_3_saying_so(tmp_path):
    import torch

    model_dir = tmp_path / "eager"
    model_dir.mkdir()
    torch.save(torch.nn.Linear(4, 3).state_dict(), model_dir / "model.pt")
    result = start_that_fails("pytorch", "eager", model_dir)
    assert result.returncode == 3
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"ModelLoadFailed: cannot load {model_dir / 'model.pt'} as a TorchScript program")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_replica_listens_on_loopback_only_and_starts_no_grpc(replicas, tmp_path):
    replica = replicas("sklearn", "iris", train_iris_sklearn(tmp_path / "iris"))
    replica.wait_ready()

    # Exactly the socket it was given: no 0.0.0.0:8080, no [::]:8081 for gRPC.
    assert listening_sockets(replica.process.pid) == {("127.0.0.1", replica.port)}

    # Connection attempts on another address: tests/test_loopback.py, inside a network namespace.


def start_that_fails(model_format: str, name: str, model_dir: Path) -> subprocess.CompletedProcess:
    """Run a replica expected to exit before serving; its exit code and output."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return subprocess.run(
            replica_command(model_format, name, model_dir, sock.fileno()),
            pass_fds=[sock.fileno()], cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip


@pytest.mark.slow
def test_corrupt_model_file_exits_3_and_says_why(tmp_path):
    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    (model_dir / "model.joblib").write_bytes(b"this is not a pickle")
    result = start_that_fails("sklearn", "broken", model_dir)
    assert result.returncode == 3
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ModelLoadFailed: cannot unpickle ")
    assert "model.joblib" in last_line
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_model_file_exits_3_and_says_why(tmp_path):
    (tmp_path / "empty").mkdir()
    result = start_that_fails("onnx", "empty", tmp_path / "empty")
    assert result.returncode == 3
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == f"ModelLoadFailed: no model.onnx (or other *.onnx file) in {tmp_path / 'empty'}"


@pytest.mark.slow
def test_unknown_model_format_exits_3_and_names_the_known_ones(tmp_path):
    result = start_that_fails("tensorflow", "tf", tmp_path)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "ModelLoadFailed: unknown model format 'tensorflow' "
        "(known formats: custom, huggingface, lightgbm, onnx, pytorch, sklearn, xgboost)"
    )


@pytest.mark.slow
def test_replica_refuses_a_socket_bound_beyond_loopback(tmp_path):
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        result = subprocess.run(
            replica_command("sklearn", "iris", train_iris_sklearn(tmp_path / "iris"), sock.fileno()),
            pass_fds=[sock.fileno()], cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    assert "not to a loopback address" in result.stderr


@pytest.mark.slow
def test_sigterm_stops_replica_promptly_with_exit_0(replicas, tmp_path):
    replica = replicas("sklearn", "iris", train_iris_sklearn(tmp_path / "iris"))
    replica.wait_ready()

    replica.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert replica.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 3
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{replica.url}/v2/health/ready", timeout=2)
    assert "Traceback" not in replica.stderr


@pytest.mark.slow
def test_replica_dies_with_its_parent(tmp_path):
    model_dir = train_iris_sklearn(tmp_path / "iris")
    # A parent that starts a replica, says its pid, and then is killed without a chance to clean up.
    parent_code = textwrap.dedent(
        f"""
        import socket, subprocess, sys, time
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        command = {replica_command("sklearn", "iris", model_dir, 0)!r}
        command[-1] = str(sock.fileno())
        child = subprocess.Popen(command, pass_fds=[sock.fileno()], cwd={str(REPO)!r},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(child.pid, sock.getsockname()[1], flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    replica_pid = None
    try:
        replica_pid, port = map(int, parent.stdout.readline().split())
        wait_ready(f"http://127.0.0.1:{port}", lambda: _is_running(replica_pid), lambda: "(not captured)")

        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _is_running(replica_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _is_running(replica_pid), "the replica outlived its parent"
    finally:
        stop(parent)
        if replica_pid is not None and _is_running(replica_pid):
            os.kill(replica_pid, signal.SIGKILL)


@pytest.mark.slow
def test_replica_whose_parent_is_already_gone_leaves_at_once(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        command = replica_command("sklearn", "iris", train_iris_sklearn(tmp_path / "iris"), sock.fileno())
        result = subprocess.run(
            [*command, "--parent-pid", "1"],  # not our parent: as if it had died and we were re-parented
            pass_fds=[sock.fileno()], cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0  # a replica that had started serving would not have exited at all
    assert result.stderr == ""


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent (now init) has yet to reap it


@pytest.mark.slow
def test_a_custom_predictor_whose_requirements_are_not_installed_exits_3_naming_them(tmp_path):
    import sklearn

    model_dir = tmp_path / "needs"
    model_dir.mkdir()
    (model_dir / "predictor.py").write_text("import kserve\n\n\nclass Predictor(kserve.Model):\n    pass\n")
    (model_dir / "requirements.txt").write_text(
        "# what the predictor imports\nnumpy>=1\nzeroserve-no-such-package>=1.0\nscikit-learn<0.1  # too old\n"
        "pywin32>=300; sys_platform == 'win32'\n")
    result = start_that_fails("custom", "needs", model_dir)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        f"ModelLoadFailed: {model_dir / 'requirements.txt'} is not satisfied by the packages installed here: "
        f"zeroserve-no-such-package>=1.0 (not installed); scikit-learn<0.1 ({sklearn.__version__} installed). "
        "zeroserve installs nothing at run time: install them where zeroserve runs (on a cluster, into the image)")
