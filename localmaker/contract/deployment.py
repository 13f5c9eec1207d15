"""Deploy the artifact under test the way a user would, and always tear it down.

The endpoint is created with localmaker's own ``Model(...).deploy()``, so what is tested is what
SageMaker would run: the same packing, the same ``SAGEMAKER_PROGRAM``, the same startup health check.
A model_fn that raises is not an error of the contract test: it is the ping check failing, with the
endpoint's FailureReason.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from localmaker.deploy import Model, Session
from localmaker.errors import ConfigurationError, DeploymentError
from localmaker.spec.names import PLACEHOLDER_ROLE


@dataclass(frozen=True)
class ContractTarget:
    """What to deploy: ``source`` is a named source, a model directory or a model.tar.gz.

    ``entry_point`` without ``source_dir`` is a path to the script, and only that file becomes ``code/``,
    as the SageMaker SDK uploads only the entry point when there is no source_dir.
    """

    source: str
    entry_point: str | None = None
    source_dir: Path | None = None
    instance_type: str = "ml.m5.xlarge"
    startup_timeout_s: int = 600
    request_timeout_s: float = 300.0

    @property
    def label(self) -> str:
        spec = self.entry_point if self.entry_point and self.source_dir is None else self.source
        stem = Path(spec.rstrip("/")).name.removesuffix(".tar.gz").removesuffix(".py")
        return re.sub(r"[^a-zA-Z0-9]+", "-", stem).strip("-").lower()[:30] or "model"


@dataclass
class Deployment:
    endpoint_name: str
    seconds: float = 0.0
    failure: str | None = None  # why the endpoint never became InService
    instance_urls: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _code_folder(target: ContractTarget) -> Iterator[tuple[str | None, Path | None]]:
    """The (entry_point, source_dir) to hand to Model, copying a lone entry-point script to a folder."""
    if target.entry_point is None or target.source_dir is not None:
        yield target.entry_point, target.source_dir
        return
    script = Path(target.entry_point)
    if not script.is_file():
        raise ConfigurationError(f"--entry-point {script} does not exist; give the path to your inference script, "
                                 "or --source-dir with the folder that holds it")
    with tempfile.TemporaryDirectory(prefix="localmaker-contract-code-") as folder:
        shutil.copy2(script, Path(folder) / script.name)
        yield script.name, Path(folder)


def _tear_down(session: Session, name: str) -> None:
    client = session.sagemaker_client
    for delete in (lambda: client.delete_endpoint(EndpointName=name),
                   lambda: client.delete_endpoint_config(EndpointConfigName=name),
                   lambda: client.delete_model(ModelName=name)):
        with contextlib.suppress(ClientError):  # whatever was never created
            delete()


@contextlib.contextmanager
def deployed(session: Session, target: ContractTarget) -> Iterator[Deployment]:
    """One instance of ``target``, InService or Failed; deleted on the way out, whatever happened."""
    deployment = Deployment(endpoint_name=f"contract-{target.label}-{uuid.uuid4().hex[:6]}")
    with _code_folder(target) as (entry_point, source_dir):
        model = Model(model_data=target.source, role=PLACEHOLDER_ROLE, entry_point=entry_point, source_dir=source_dir,
                      name=deployment.endpoint_name, sagemaker_session=session)
        started = time.monotonic()
        try:
            try:
                model.deploy(initial_instance_count=1, instance_type=target.instance_type,
                             endpoint_name=deployment.endpoint_name,
                             container_startup_health_check_timeout=target.startup_timeout_s)
            except DeploymentError as exc:
                deployment.failure = str(exc)
            deployment.seconds = time.monotonic() - started
            if deployment.failure is None:
                deployment.instance_urls = session.local_endpoint(deployment.endpoint_name).instance_urls
            yield deployment
        finally:
            _tear_down(session, deployment.endpoint_name)
