"""``zeroserve deploy``: register a model (a local path, uploaded, or a URL) as an artifact, configure a
serving template for it, deploy that configuration (or an existing one), watch it come up and print
how to call it. The deployment's name is its configuration's (``--name``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from zeroserve.cli.options import GroupOption, client_for
from zeroserve.cli.output import bad_input, console, err, failures, self_command
from zeroserve.cli.uploads import is_url, local_path, uploaded
from zeroserve.cli.watch import settled_or_exit, watch_deployment
from zeroserve.client import ApiError, Client

# What `zeroserve deploy --help` says of the model a path holds, per serving template (docs/models.md).
LAYOUTS = """A local path (a directory, or one file) is uploaded into the resource group's own area of the \
zeroserve machine and registered from there; a URL is registered as it is.

\b
What each serving template (-e) loads from the model directory:
  sklearn        model.joblib (joblib.dump)
  xgboost        model.bst, or the only *.bst / *.json / *.ubj
  lightgbm       model.bst (booster.save_model)
  onnx           model.onnx
  pytorch        model.pt (TorchScript), or NAME/VERSION/model.pt
  huggingface    a transformers directory (config.json, weights, tokenizer)
  huggingface-embeddings   a sentence-transformers or transformers encoder
  custom         what the image of -p image=... reads
"""

# Executables whose models answer through the OpenAI API: the call to show, per executable.
OPENAI_CALLS = {
    "huggingface": ("chat/completions", '{"model": "%s", "messages": [{"role": "user", "content": "Hello"}], '
                                        '"max_tokens": 32, "stream": true}'),
    "huggingface-embeddings": ("embeddings", '{"model": "%s", "input": "Hello"}'),
}


def _predict_example(deployment_id: str, url: str, executable: str | None) -> None:
    console.print("Call it:")
    token = f"-H \"Authorization: Bearer $({self_command()} token)\" -H 'Content-Type: application/json'"
    if executable in OPENAI_CALLS:
        path, body = OPENAI_CALLS[executable]
        console.print(f"  curl -sN -X POST {url}/openai/v1/{path} \\\n       {token} -d '{body % deployment_id}'",
                      soft_wrap=True, highlight=False)
        console.print(f"  or an OpenAI client: base_url={url}/openai/v1, api_key=<the token>, model={deployment_id}, "
                      "header AI-Resource-Group (docs/models.md)", soft_wrap=True, highlight=False)
        return
    sample = '{"instances": [[...]]}'
    console.print(f"  {self_command()} predict {deployment_id} --data '{sample}'", soft_wrap=True, highlight=False)
    console.print(f"  curl -s -X POST {url}/v1/models/{deployment_id}:predict \\\n       {token} -d '{sample}'",
                  soft_wrap=True, highlight=False)


def _parameters(values: list[str]) -> dict[str, str]:
    parameters = {}
    for value in values:
        key, equals, rest = value.partition("=")
        if not equals or not key:
            raise bad_input(f"--param {value!r} is not key=value")
        parameters[key] = rest
    return parameters


def _model_url(zs: Client, model: str) -> str:
    """A URL as given; a local path uploaded into the group's uploads (zeroserve reads nothing else of this disk)."""
    if is_url(model):
        return model
    path = local_path(model)
    with console.status(f"uploading {path} ..."):
        return uploaded(zs, path)


def _input_artifact(zs: Client, executable: str) -> str:
    """The name of the executable's model input (``model`` in zeroserve's templates)."""
    try:
        found = zs.executable(executable)
    except ApiError as error:
        if error.status != 404:
            raise
        known = ", ".join(sorted(e.id for e in zs.executables()))
        raise bad_input(f"no executable {executable!r}; known: {known or 'none'}") from None
    if not found.input_artifacts:
        raise bad_input(f"executable {executable} takes no input artifact to deploy a model with")
    return found.input_artifacts[0].name


def deploy(
    model: Annotated[str | None, typer.Argument(
        help="Where the model is: a local path, or a URL (file://, s3://, gs://, https://, ai://).")] = None,
    configuration: Annotated[str | None, typer.Option(
        "--configuration", "-c", help="Deploy this existing configuration instead of a model.")] = None,
    executable: Annotated[str, typer.Option("--executable", "-e", help="The serving template.")] = "sklearn",
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="A template parameter, key=value (repeatable), e.g. -p maxReplicas=4.")] = None,
    plan: Annotated[str | None, typer.Option(help="The resource plan: starter, basic, infer.s, ...")] = None,
    name: Annotated[str | None, typer.Option(
        help="The deployment's name (its configuration's); default: the model's file or directory name.")] = None,
    artifact_name: Annotated[str | None, typer.Option(help="The artifact's name; default: as --name.")] = None,
    ttl: Annotated[str | None, typer.Option(help="Stop and delete after this long: 30m, 2h, 1d.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for RUNNING.")] = 300,
    wait: Annotated[bool, typer.Option(help="Watch the deployment until it is RUNNING or DEAD.")] = True,
    group: GroupOption = None,
) -> None:
    """Deploy a model: register it, configure a serving template for it, deploy, and watch it come up."""
    if (model is None) == (configuration is None):
        raise bad_input("give a model (path or URL) or --configuration ID, not both")
    parameters = _parameters(param or [])
    if plan is not None:
        parameters["resourcePlan"] = plan
    if configuration is not None and parameters:
        raise bad_input("--param and --plan belong to a new configuration: not with --configuration")
    configuration_given = configuration
    with failures(), client_for(group) as zs:
        if configuration is None:
            assert model is not None
            label = name or (model.rstrip("/").rsplit("/", 1)[-1] or "model")
            key = _input_artifact(zs, executable)
            url = _model_url(zs, model)
            artifact = zs.create_artifact(artifact_name or label, url, kind="model")
            console.print(f"artifact [bold]{artifact.id}[/bold] registered: {url}", highlight=False)
            configured = zs.create_configuration(label, executable_id=executable, parameters=parameters,
                                                 artifacts={key: artifact.id})
            configuration = configured.id
            console.print(f"configuration [bold]{configuration}[/bold]: {executable}"
                          + "".join(f" {k}={v}" for k, v in parameters.items()), highlight=False)
        created = zs.create_deployment(configuration, ttl=ttl)
        console.print(f"deployment [bold]{created.id}[/bold] requested"
                      + (f" (name {name})" if name and configuration_given is None else ""), highlight=False)
        if not wait:
            return
        try:
            view = watch_deployment(zs, created.id, timeout)
        except KeyboardInterrupt:
            err.print(f"stopped watching; the deployment goes on: `zeroserve status {created.id} --watch`")
            raise typer.Exit(130) from None
        settled_or_exit(view, timeout)
        url = view.url or zs.inference_url(created.id)
        console.print(f"\n[bold]Deployment {created.id} is {view.status}[/bold]", highlight=False)
        console.print(f"URL: {url}", soft_wrap=True, highlight=False)
        if view.status == "RUNNING":
            _predict_example(created.id, url, executable if configuration_given is None else None)
