"""localmaker's pytest fixtures, registered through the ``pytest11`` entry point.

Installing localmaker is enough for a test suite to deploy endpoints:

- ``localmaker_session``: an embedded control plane for the whole test session, closed (and every
  instance process reaped) when the session ends. With ``--localmaker-endpoint-url URL`` (or the
  ``LOCALMAKER_ENDPOINT_URL`` variable, or the ``localmaker_endpoint_url`` ini key) it attaches to a running
  ``localmaker up`` instead, and starts nothing of its own.
- ``localmaker_endpoint``: a factory that deploys a model and returns a ``FakePredictor``; whatever it
  deployed is deleted when the test ends, passed or failed. ``localmaker_module_endpoint`` and
  ``localmaker_session_endpoint`` are the same factory, deleting at the end of the module or the session:
  an endpoint takes seconds to start, so tests that can share one should.

A failure that localmaker raises (a ModelError, a DeploymentError) is reported with the frames of the test
and of the user's code, not localmaker's: the container's traceback is in the error's message.

pytest imports this module in every run of every suite in the environment, so importing it must stay
cheap: the deploy layer (boto3, moto) is imported only when a fixture is requested.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest

from localmaker.spec.names import PLACEHOLDER_ROLE

if TYPE_CHECKING:
    from localmaker.deploy import FakePredictor, Model, Session
    from localmaker.deploy.deserializers import BaseDeserializer
    from localmaker.deploy.serializers import BaseSerializer

DEFAULT_INSTANCE_TYPE = "ml.m5.large"
ENDPOINT_URL_OPTION = "--localmaker-endpoint-url"
ENDPOINT_URL_INI = "localmaker_endpoint_url"
ENDPOINT_URL_ENV = "LOCALMAKER_ENDPOINT_URL"
_PACKAGE = str(Path(__file__).resolve().parent)

Deploy = Callable[..., "FakePredictor"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("localmaker")
    group.addoption(ENDPOINT_URL_OPTION, dest="localmaker_endpoint_url", default=None, metavar="URL",
                    help="deploy through a running `localmaker up` at URL (e.g. http://127.0.0.1:4566) instead of "
                         f"starting a control plane for the session; also ${ENDPOINT_URL_ENV} or the "
                         f"{ENDPOINT_URL_INI} ini key")
    parser.addini(ENDPOINT_URL_INI, help=f"the URL of a running `localmaker up` (see {ENDPOINT_URL_OPTION})",
                  default="")


def attached_url(config: pytest.Config) -> str | None:
    """The running control plane to use: the option, else the environment variable, else the ini key."""
    url = (config.getoption("localmaker_endpoint_url") or os.environ.get(ENDPOINT_URL_ENV)
           or str(config.getini(ENDPOINT_URL_INI) or ""))
    return url.strip().rstrip("/") or None


@pytest.fixture(scope="session")
def localmaker_session(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Session]:
    """One control plane for the whole test session: embedded (moto plus local instances), or attached."""
    from localmaker.deploy import Session

    url = attached_url(pytestconfig)
    if url is not None:
        try:
            urllib.request.urlopen(f"{url}/_localmaker/endpoints", timeout=10).close()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            pytest.fail(f"no localmaker control plane answers at {url} ({ENDPOINT_URL_OPTION}, ${ENDPOINT_URL_ENV} "
                        f"or {ENDPOINT_URL_INI}): {exc}; start one with `localmaker up`, or leave the option out "
                        "to start one for this session", pytrace=False)
        yield Session(endpoint_url=url)
        return
    with Session(work_root=tmp_path_factory.mktemp("localmaker")) as session:
        yield session


class _Deployments:
    """The factory behind the endpoint fixtures: deploys, and remembers what to delete at teardown."""

    def __init__(self, session: Session, owner: str) -> None:
        self._session = session
        self._owner = owner
        self._deployed: list[tuple[str, str]] = []  # (endpoint name, model name)

    def deploy(self, model_data: str | Path, entry_point: str | None = None, source_dir: str | Path | None = None,
               instance_type: str = DEFAULT_INSTANCE_TYPE, env: dict[str, str] | None = None,
               serializer: BaseSerializer | None = None, deserializer: BaseDeserializer | None = None,
               **kwargs: Any) -> FakePredictor:
        from localmaker.deploy import Model
        from localmaker.deploy.deserializers import JSONDeserializer
        from localmaker.deploy.serializers import JSONSerializer

        model_kwargs, deploy_kwargs = _split_options(Model, kwargs)
        model_kwargs.setdefault("role", PLACEHOLDER_ROLE)
        # Named before deploying, so a deployment that fails half-way is still cleaned up.
        endpoint_name = deploy_kwargs.setdefault("endpoint_name", _endpoint_name(self._owner))
        model_name = model_kwargs.setdefault("name", endpoint_name)
        self._deployed.append((endpoint_name, model_name))
        model = Model(model_data=model_data, entry_point=entry_point, source_dir=source_dir, env=env,
                      sagemaker_session=self._session, **model_kwargs)
        return model.deploy(instance_type=instance_type, serializer=serializer or JSONSerializer(),
                            deserializer=deserializer or JSONDeserializer(), **deploy_kwargs)

    def delete_all(self) -> None:
        for endpoint_name, model_name in reversed(self._deployed):
            _delete(self._session, endpoint_name, model_name)


def _deployments(session: Session, request: pytest.FixtureRequest) -> Iterator[Deploy]:
    deployments = _Deployments(session, request.node.name or "session")  # the session node has no name
    yield deployments.deploy
    deployments.delete_all()


@pytest.fixture
def localmaker_endpoint(localmaker_session: Session, request: pytest.FixtureRequest) -> Iterator[Deploy]:
    """Deploy with ``localmaker_endpoint(model_data, entry_point=..., source_dir=..., instance_type=..., env=...)``.

    Returns a ``FakePredictor`` that speaks JSON unless ``serializer``/``deserializer`` say otherwise.
    Other keyword arguments go to ``Model`` (``role``, ``corpus``, ``name``, ...) or to ``Model.deploy``
    (``initial_instance_count``, ``endpoint_name``, ...). Each endpoint, its config and its model are
    deleted at teardown, also when the deployment itself failed.
    """
    yield from _deployments(localmaker_session, request)


@pytest.fixture(scope="module")
def localmaker_module_endpoint(localmaker_session: Session, request: pytest.FixtureRequest) -> Iterator[Deploy]:
    """``localmaker_endpoint``, deleting at the end of the module: deploy once in a module-scoped fixture
    of your own, and every test of the module shares that endpoint."""
    yield from _deployments(localmaker_session, request)


@pytest.fixture(scope="session")
def localmaker_session_endpoint(localmaker_session: Session, request: pytest.FixtureRequest) -> Iterator[Deploy]:
    """``localmaker_endpoint``, deleting at the end of the test session (for a session-scoped fixture)."""
    yield from _deployments(localmaker_session, request)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failure localmaker raised on purpose shows the test's frames, not localmaker's internals: the
    container's traceback is in its message (``--fulltrace`` shows everything)."""
    excinfo = call.excinfo
    if excinfo is not None and _raised_by_localmaker(excinfo.value) and not item.config.getoption("fulltrace"):
        # pytest cuts the traceback at the test's frame by walking the raw traceback from there, so the
        # frames are left out of a rebuilt chain; filtering pytest's entries alone would be undone.
        rebuilt = _without_frames_under(excinfo.tb, _PACKAGE)
        if rebuilt is not None:
            excinfo.traceback = type(excinfo.traceback)(rebuilt)
    return (yield)


def _raised_by_localmaker(error: BaseException) -> bool:
    errors = sys.modules.get("localmaker.errors")  # not imported: nothing of localmaker's could have raised it
    return errors is not None and isinstance(error, errors.LocalmakerError)


def _without_frames_under(tb: TracebackType | None, folder: str) -> TracebackType | None:
    """A copy of the traceback chain ``tb`` without the frames of code under ``folder``."""
    kept = []
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(folder):
            kept.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for entry in reversed(kept):
        rebuilt = TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt


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
