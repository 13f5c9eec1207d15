"""localmaker's pytest fixtures, registered through the ``pytest11`` entry point.

Installing localmaker is enough for a test suite to deploy endpoints:

- ``localmaker_session``: an embedded control plane for the whole test session, closed (and every
  instance process reaped) when the session ends.
- ``localmaker_endpoint``: a factory that deploys a model and returns a ``FakePredictor``; whatever it
  deployed is deleted when the test ends, passed or failed.

pytest imports this module in every run of every suite in the environment, so importing it must stay
cheap: the deploy layer (boto3, moto) is imported only when a fixture is requested.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from localmaker.spec.names import PLACEHOLDER_ROLE

if TYPE_CHECKING:
    from localmaker.deploy import FakePredictor, Model, Session
    from localmaker.deploy.deserializers import BaseDeserializer
    from localmaker.deploy.serializers import BaseSerializer

DEFAULT_INSTANCE_TYPE = "ml.m5.large"

Deploy = Callable[..., "FakePredictor"]


@pytest.fixture(scope="session")
def localmaker_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """One embedded control plane (moto plus local instances) for the whole test session."""
    from localmaker.deploy import Session

    with Session(work_root=tmp_path_factory.mktemp("localmaker")) as session:
        yield session


@pytest.fixture
def localmaker_endpoint(localmaker_session: Session, request: pytest.FixtureRequest) -> Iterator[Deploy]:
    """Deploy with ``localmaker_endpoint(model_data, entry_point=..., source_dir=..., instance_type=..., env=...)``.

    Returns a ``FakePredictor`` that speaks JSON unless ``serializer``/``deserializer`` say otherwise.
    Other keyword arguments go to ``Model`` (``role``, ``corpus``, ``name``, ...) or to ``Model.deploy``
    (``initial_instance_count``, ``endpoint_name``, ...). Each endpoint, its config and its model are
    deleted at teardown, also when the deployment itself failed.
    """
    deployed: list[tuple[str, str]] = []  # (endpoint name, model name)

    def deploy(model_data: str | Path, entry_point: str | None = None, source_dir: str | Path | None = None,
               instance_type: str = DEFAULT_INSTANCE_TYPE, env: dict[str, str] | None = None,
               serializer: BaseSerializer | None = None, deserializer: BaseDeserializer | None = None,
               **kwargs: Any) -> FakePredictor:
        from localmaker.deploy import Model
        from localmaker.deploy.deserializers import JSONDeserializer
        from localmaker.deploy.serializers import JSONSerializer

        model_kwargs, deploy_kwargs = _split_options(Model, kwargs)
        model_kwargs.setdefault("role", PLACEHOLDER_ROLE)
        # Named before deploying, so a deployment that fails half-way is still cleaned up.
        endpoint_name = deploy_kwargs.setdefault("endpoint_name", _endpoint_name(request.node.name))
        model_name = model_kwargs.setdefault("name", endpoint_name)
        deployed.append((endpoint_name, model_name))
        model = Model(model_data=model_data, entry_point=entry_point, source_dir=source_dir, env=env,
                      sagemaker_session=localmaker_session, **model_kwargs)
        return model.deploy(instance_type=instance_type, serializer=serializer or JSONSerializer(),
                            deserializer=deserializer or JSONDeserializer(), **deploy_kwargs)

    yield deploy
    for endpoint_name, model_name in reversed(deployed):
        _delete(localmaker_session, endpoint_name, model_name)


def _split_options(model_class: type[Model], options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route each option to Model() or Model.deploy(); an unknown one is an error, not silently dropped."""
    model_params = _named_parameters(model_class.__init__)
    deploy_params = _named_parameters(model_class.deploy)
    unknown = sorted(set(options) - model_params - deploy_params)
    if unknown:
        raise TypeError(f"localmaker_endpoint() got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"Model accepts {sorted(model_params)}, Model.deploy accepts {sorted(deploy_params)}")
    model_kwargs = {k: v for k, v in options.items() if k in model_params}
    deploy_kwargs = {k: v for k, v in options.items() if k not in model_params}
    return model_kwargs, deploy_kwargs


def _named_parameters(function: Callable[..., Any]) -> set[str]:
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name for name, p in inspect.signature(function).parameters.items() if p.kind in named} - {"self"}


def _endpoint_name(test_name: str) -> str:
    """A valid, unique SageMaker name that still says which test deployed it."""
    stem = re.sub(r"[^a-zA-Z0-9]+", "-", test_name).strip("-")[:50].strip("-") or "test"
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def _delete(session: Session, endpoint_name: str, model_name: str) -> None:
    # Each step may have nothing to delete: the test deleted it, or the deployment never got that far.
    from botocore.exceptions import ClientError

    client = session.sagemaker_client
    for delete in (lambda: client.delete_endpoint(EndpointName=endpoint_name),
                   lambda: client.delete_endpoint_config(EndpointConfigName=endpoint_name),
                   lambda: client.delete_model(ModelName=model_name)):
        with contextlib.suppress(ClientError):
            delete()
