"""Artifact URIs: what may be read, and staging into the model cache with kserve-storage."""

from __future__ import annotations

import asyncio

import pytest

from zeroserve.artifacts.cache import ModelCache
from zeroserve.errors import ArtifactNotFound, InvalidArtifactUri
from zeroserve.redaction import redact


@pytest.fixture
def cache(settings) -> ModelCache:
    settings.data_dir.mkdir(parents=True)
    return ModelCache(settings)


def test_a_file_uri_inside_the_allowed_root_is_accepted(cache, settings):
    model = settings.data_dir / "models-src" / "iris"
    model.mkdir(parents=True)
    cache.check(model.as_uri())


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "file:///", "/etc/passwd"])
def test_a_file_uri_outside_the_allowed_roots_is_refused(cache, uri):
    with pytest.raises(InvalidArtifactUri):
        cache.check(uri)


def test_dot_dot_cannot_climb_out_of_an_allowed_root(cache, settings):
    with pytest.raises(InvalidArtifactUri, match="outside the allowed roots"):
        cache.check(f"file://{settings.data_dir.resolve()}/../../../etc")


def test_a_symlink_cannot_lead_out_of_an_allowed_root(cache, settings, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (settings.data_dir / "innocent").symlink_to(secret)
    with pytest.raises(InvalidArtifactUri, match="outside the allowed roots"):
        cache.check((settings.data_dir / "innocent").as_uri())


@pytest.mark.parametrize("uri", ["ftp://host/model", "file://otherhost/data/model", "file:relative/model",
                                 "javascript:alert(1)", "model.joblib"])
def test_unsupported_or_ambiguous_uris_are_refused_with_a_reason(cache, uri):
    with pytest.raises(InvalidArtifactUri) as refused:
        cache.check(uri)
    assert refused.value.reason == "InvalidArtifactUri"


@pytest.mark.parametrize("uri", ["s3://bucket/model", "gs://bucket/model", "https://example.org/model.tgz",
                                 "hf://org/model"])
def test_remote_uris_are_accepted_for_staging(cache, uri):
    cache.check(uri)


async def test_staging_a_file_uri_puts_the_files_in_the_cache_once(cache, settings):
    model = settings.data_dir / "src"
    model.mkdir()
    (model / "model.joblib").write_bytes(b"weights")
    staged = await cache.stage(model.as_uri())
    assert (staged / "model.joblib").read_bytes() == b"weights"
    assert staged.is_relative_to(settings.model_cache_dir)
    assert await cache.stage(model.as_uri()) == staged


async def test_staging_a_missing_file_uri_says_artifact_not_found(cache, settings):
    with pytest.raises(ArtifactNotFound):
        await cache.stage((settings.data_dir / "nothing-here").as_uri())


async def test_staging_the_same_uri_twice_at_once_stages_it_once(cache, settings):
    model = settings.data_dir / "src"
    model.mkdir()
    (model / "model.joblib").write_bytes(b"weights")
    first, second = await asyncio.gather(cache.stage(model.as_uri()), cache.stage(model.as_uri()))
    assert first == second and (first / "model.joblib").read_bytes() == b"weights"
    assert [p.name for p in settings.model_cache_dir.iterdir()] == [first.name], "no partial copy left behind"


def test_a_symlink_inside_a_model_directory_cannot_lead_out_of_the_roots(cache, settings):
    model = settings.data_dir / "src"
    model.mkdir()
    (model / "model.joblib").symlink_to("/etc/passwd")
    with pytest.raises(InvalidArtifactUri, match="outside the allowed roots"):
        cache.check(model.as_uri())


def test_secrets_in_uris_are_redacted_for_logs_and_messages():
    assert redact("https://user:s3cret@host/model.tgz?X-Amz-Signature=abc") == "https://user:***@host/model.tgz?***"
    assert redact("nats://zs:pw@127.0.0.1:4222") == "nats://zs:***@127.0.0.1:4222"
    assert redact("s3://bucket/model") == "s3://bucket/model"
    # A NATS cluster's servers (ZEROSERVE_NATS_URL): each one's password, not only the first.
    assert redact("nats://zs:pw@nats-0:4222,nats://zs:pw@nats-1:4222") == "nats://zs:***@nats-0:4222,nats://zs:***@nats-1:4222"


@pytest.mark.parametrize("uri", ["http://[unclosed/model", "https://host:99999/model", "s3://user:pw@[x/model"])
def test_a_uri_that_cannot_be_parsed_is_refused_with_a_reason_not_an_error(cache, uri):
    with pytest.raises(InvalidArtifactUri, match="cannot be read") as refused:
        cache.check(uri)
    assert "pw" not in str(refused.value)
