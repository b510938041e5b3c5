"""Registry fixtures: Debian's docker-registry on 127.0.0.1, without and with htpasswd auth."""

import pytest

from tests.support.images import busybox_root, busybox_store_template, busybox_tar  # noqa: F401
from tests.support.registry import start_registry

USERS = {"ann": "s3cret-pw"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with start_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    with start_registry(tmp_path_factory.mktemp("auth-registry"), USERS) as reg:
        yield reg


@pytest.fixture(autouse=True)
def private_docker_config(tmp_path, monkeypatch):
    """Credentials go to a temp config.json, never the real ~/.docker."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("LAYERBOX_PUSH_CHUNK_SIZE", raising=False)
