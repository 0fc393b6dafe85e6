"""The custom runtime: a model directory that holds ``predictor.py``, a module with one
``kserve.Model`` subclass, KServe's custom-predictor convention. The replica imports the module and
serves an instance of that class, made as KServe's examples make theirs (``Predictor(name)``),
with KServe's own model server: V1 and V2 protocols, and an answer streamed as it is written when
``predict`` returns an async iterator (an event stream, tokens of a generation). Its files are
beside it (``Path(__file__).parent``). A ``requirements.txt`` beside it names the packages it needs:
each must be installed already (nothing is installed at run time); what is missing or of another
version fails the load, named. A module that raises when imported fails the load too, and its
traceback (from the predictor's own frames on) goes to the replica's output: the deployment's log.

A custom predictor is the artifact's own code, run in the replica's process with the rights of the
user zeroserve runs as: it can read and write what that user can and open any connection. That is
no more than a pickled scikit-learn model can do when it is unpickled, so the ``custom`` template
ships beside ``sklearn``'s (``zeroserve/templates/builtin/custom.yaml``; on a cluster it runs the
user's image instead); either way the artifact must come from a source the deployment's owner
trusts, and an operator who would not run a deployer's code removes both templates.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path

import kserve
from packaging.requirements import InvalidRequirement, Requirement

from zeroserve.errors import ModelLoadFailed

PREDICTOR_FILE = "predictor.py"
REQUIREMENTS_FILE = "requirements.txt"


def unmet_requirements(path: Path) -> list[str]:
    """What of the requirements file ``path`` the installed packages do not satisfy, one phrase each."""
    unmet = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise ModelLoadFailed(f"{path} line {number}: {exc} (a requirement is a name with a version "
                                  "specifier; options, paths and URLs are not installed here)") from exc
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # for another platform or Python
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            unmet.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            unmet.append(f"{requirement} ({version} installed)")
    return unmet


def _check_requirements(model_dir: Path) -> None:
    path = model_dir / REQUIREMENTS_FILE
    if not path.is_file():
        return
    unmet = unmet_requirements(path)
    if unmet:
        raise ModelLoadFailed(f"{path} is not satisfied by the packages installed here: {'; '.join(unmet)}. "
                              "zeroserve installs nothing at run time: install them where zeroserve runs "
                              "(on a cluster, into the image)")


def _print_traceback(exc: BaseException, path: Path) -> None:
    """The traceback of an import of ``path`` that failed, from its first frame in ``path`` on (the
    import machinery above it is no help to its author), on stderr: the deployment's log."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != str(path):
        tb = tb.tb_next
    print("".join(traceback.format_exception(type(exc), exc, tb)), end="", file=sys.stderr)


def load_predictor(name: str, model_dir: str | Path) -> kserve.Model:
    """The ``kserve.Model`` of ``model_dir/predictor.py``, made with ``name`` (the replica loads it next)."""
    path = Path(model_dir) / PREDICTOR_FILE if Path(model_dir).is_dir() else Path(model_dir)
    if not path.is_file():
        raise ModelLoadFailed(f"no {PREDICTOR_FILE} in {model_dir}")
    _check_requirements(path.parent)
    spec = importlib.util.spec_from_file_location("predictor", path)
    assert spec is not None and spec.loader is not None  # a .py file always has both
    module = importlib.util.module_from_spec(spec)
    sys.modules["predictor"] = module  # as `python predictor.py` would have it: pickles and dataclasses need it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        _print_traceback(exc, path)
        raise ModelLoadFailed(f"{path} cannot be imported: {type(exc).__name__}: {exc}") from exc
    found: list[type[kserve.Model]] = [
        value for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, kserve.Model) and value.__module__ == module.__name__]
    if len(found) != 1:
        named = ", ".join(cls.__name__ for cls in found) or "none"
        raise ModelLoadFailed(f"{path} must define exactly one kserve.Model subclass (found {named})")
    return found[0](name)
