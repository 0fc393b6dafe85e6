"""Small real models for tests: iris classifiers, trained in well under a second.

``train_iris_sklearn`` writes ``model.joblib``, ``train_iris_onnx`` the same classifier as
``model.onnx`` (without ZipMap, so that every output is a tensor the V2 protocol can carry).
Both predict class indices 0, 1, 2 for rows of four floats. ``train_iris_xgboost`` and
``train_iris_lightgbm`` write boosters (``model.json``, ``model.bst``) that answer each row with the three classes'
probabilities, as the libraries' own ``predict`` does. ``train_iris_torchscript`` writes a small
network as a TorchScript program (``model.pt``) that answers with the classes' probabilities too.
"""

from __future__ import annotations

from pathlib import Path

IRIS_ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]


def _iris_classifier():
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    features, labels = load_iris(return_X_y=True)
    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(features, labels), features


def train_iris_sklearn(directory: Path) -> Path:
    """Write ``directory/model.joblib``; returns ``directory``."""
    import joblib

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    classifier, _ = _iris_classifier()
    joblib.dump(classifier, directory / "model.joblib")
    return directory


def train_iris_onnx(directory: Path) -> Path:
    """Write ``directory/model.onnx`` (input ``input``: float32 [N, 4]); returns ``directory``."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    classifier, _ = _iris_classifier()
    onnx_model = to_onnx(
        classifier, initial_types=[("input", FloatTensorType([None, 4]))], options={"zipmap": False}
    )
    (directory / "model.onnx").write_bytes(onnx_model.SerializeToString())
    return directory


def train_iris_xgboost(directory: Path) -> Path:
    """Write ``directory/model.json``, an XGBoost multi:softprob booster; returns ``directory``."""
    import xgboost
    from sklearn.datasets import load_iris

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    features, labels = load_iris(return_X_y=True)
    classifier = xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(features, labels)
    classifier.get_booster().save_model(str(directory / "model.json"))
    return directory


def train_iris_lightgbm(directory: Path) -> Path:
    """Write ``directory/model.bst``, a LightGBM multiclass booster; returns ``directory``."""
    import lightgbm
    from sklearn.datasets import load_iris

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    features, labels = load_iris(return_X_y=True)
    classifier = lightgbm.LGBMClassifier(n_estimators=10, num_leaves=8, n_jobs=1, verbose=-1).fit(features, labels)
    classifier.booster_.save_model(str(directory / "model.bst"))
    return directory


def train_iris_torchscript(directory: Path) -> Path:
    """Write ``directory/model.pt``, a 4-16-3 network trained on iris, scripted; returns ``directory``."""
    import torch
    from sklearn.datasets import load_iris

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    features, labels = load_iris(return_X_y=True)
    x, y = torch.tensor(features, dtype=torch.float32), torch.tensor(labels)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(200):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()
    torch.jit.script(torch.nn.Sequential(net, torch.nn.Softmax(dim=1)).eval()).save(str(directory / "model.pt"))
    return directory


class _LoadsForever:
    """Unpickled as a call that never returns: a model whose load hangs (a stuck download, a deadlock)."""

    def __reduce__(self):
        import time

        return (time.sleep, (24 * 3600,))


def write_never_loading_sklearn(directory: Path) -> Path:
    """Write ``directory/model.joblib`` that a model server loads forever: it never becomes ready."""
    import joblib

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(_LoadsForever(), directory / "model.joblib")
    return directory
