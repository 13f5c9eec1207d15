"""The AWS Deep Learning Container images that real SageMaker runs for the frameworks localmaker simulates.

URIs are built the way the SageMaker SDK's ``image_uris.retrieve`` builds them, from the same facts
(its ``image_uri_config/pytorch.json`` and ``huggingface.json``): the DLC account of the region, the
framework versions AWS publishes, and the Python version each was built for. localmaker keeps its own
small table rather than importing the SDK, which is a heavy dependency for a string; the tests compare
the two wherever the SDK is installed.

Only PyTorch 2.x is listed: the built-in inference code needs transformers 4.51+, which needs it.
"""

from __future__ import annotations

from localmaker.errors import ConfigurationError

DEFAULT_PYTORCH_VERSION = "2.6.0"  # the newest inference DLC; closest to the torch the local endpoint runs

# The DLC registry account per region. Most commercial regions share one; opt-in regions, China and
# GovCloud keep their own.
_SHARED_ACCOUNT = "763104351884"
_ACCOUNTS: dict[str, str] = {
    **dict.fromkeys((
        "ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2", "ca-central-1",
        "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3", "sa-east-1",
        "us-east-1", "us-east-2", "us-west-1", "us-west-2",
    ), _SHARED_ACCOUNT),
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-6": "633930458069",
    "ap-southeast-7": "590183813437",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "mx-central-1": "637423239942",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}
# Regions that have the PyTorch DLCs but no Hugging Face inference DLC.
_WITHOUT_HUGGING_FACE = frozenset({"ap-east-2", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "mx-central-1"})

# PyTorch version -> the only Python version its DLC ships.
_PYTORCH_INFERENCE: dict[str, str] = {
    "2.0.0": "py310", "2.0.1": "py310", "2.1.0": "py310", "2.2.0": "py310",
    "2.3.0": "py311", "2.4.0": "py311", "2.5.1": "py311", "2.6.0": "py312",
}
_PYTORCH_TRAINING: dict[str, str] = {**_PYTORCH_INFERENCE, "2.7.1": "py312", "2.8.0": "py312"}

# (transformers, PyTorch) -> (Python, GPU tag suffix, CPU tag suffix) of the Hugging Face inference DLC.
_HUGGING_FACE_INFERENCE: dict[tuple[str, str], tuple[str, str, str]] = {
    ("4.28.1", "2.0.0"): ("py310", "cu118-ubuntu20.04", "ubuntu20.04"),
    ("4.37.0", "2.1.0"): ("py310", "cu118-ubuntu20.04", "ubuntu22.04"),
    ("4.48.0", "2.3.0"): ("py311", "cu121-ubuntu22.04", "ubuntu22.04"),
    ("4.49.0", "2.6.0"): ("py312", "cu124-ubuntu22.04", "ubuntu22.04"),
    ("4.51.3", "2.6.0"): ("py312", "cu124-ubuntu22.04", "ubuntu22.04"),
}


def known_regions() -> list[str]:
    return sorted(_ACCOUNTS)


def registry(region: str) -> str:
    """``<account>.dkr.ecr.<region>.<domain>``: where the region's DLCs live."""
    account = _ACCOUNTS.get(region)
    if account is None:
        raise ConfigurationError(
            f"no SageMaker Deep Learning Containers are known for region {region!r}; known regions: "
            f"{', '.join(known_regions())}. Check the region name, or pass image_uri=... yourself"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}"


def pytorch_inference_uri(region: str, framework_version: str = DEFAULT_PYTORCH_VERSION,
                          py_version: str | None = None, gpu: bool = False) -> str:
    """The PyTorch inference DLC: ``<registry>/pytorch-inference:2.6.0-gpu-py312`` for a GPU instance."""
    return _pytorch_uri("pytorch-inference", _PYTORCH_INFERENCE, region, framework_version, py_version, gpu)


def pytorch_training_uri(region: str, framework_version: str = DEFAULT_PYTORCH_VERSION,
                         py_version: str | None = None, gpu: bool = False) -> str:
    """The PyTorch training DLC, which runs an entry script with the SageMaker training toolkit."""
    return _pytorch_uri("pytorch-training", _PYTORCH_TRAINING, region, framework_version, py_version, gpu)


def huggingface_inference_uri(region: str, transformers_version: str, pytorch_version: str | None = None,
                              py_version: str | None = None, gpu: bool = False) -> str:
    """The Hugging Face PyTorch inference DLC, whose tag also names CUDA and the OS:
    ``<registry>/huggingface-pytorch-inference:2.6.0-transformers4.51.3-gpu-py312-cu124-ubuntu22.04``.

    ``pytorch_version`` may be left out when the transformers version comes with one PyTorch only.
    """
    host = registry(region)
    if region in _WITHOUT_HUGGING_FACE:
        raise ConfigurationError(f"AWS publishes no Hugging Face inference DLC in {region}; use the PyTorch "
                                 "image (leave transformers_version unset) or another region")
    transformers = _full_version(transformers_version, {t for t, _ in _HUGGING_FACE_INFERENCE}, "transformers")
    pairs = {pt: facts for (t, pt), facts in _HUGGING_FACE_INFERENCE.items() if t == transformers}
    if pytorch_version is None:
        if len(pairs) > 1:
            raise ConfigurationError(f"transformers {transformers} comes with PyTorch {', '.join(sorted(pairs))}: "
                                     "pass framework_version to pick one")
        pytorch = next(iter(pairs))
    else:
        pytorch = _full_version(pytorch_version, set(pairs), f"PyTorch with transformers {transformers}")
    python, gpu_suffix, cpu_suffix = pairs[pytorch]
    _check_python(py_version, python, f"Hugging Face transformers {transformers} with PyTorch {pytorch}")
    processor, suffix = ("gpu", gpu_suffix) if gpu else ("cpu", cpu_suffix)
    return f"{host}/huggingface-pytorch-inference:{pytorch}-transformers{transformers}-{processor}-{python}-{suffix}"


def _pytorch_uri(repository: str, versions: dict[str, str], region: str, framework_version: str,
                 py_version: str | None, gpu: bool) -> str:
    host = registry(region)
    version = _full_version(framework_version, set(versions), f"PyTorch ({repository})")
    _check_python(py_version, versions[version], f"PyTorch {version} ({repository})")
    return f"{host}/{repository}:{version}-{'gpu' if gpu else 'cpu'}-{versions[version]}"


def _full_version(requested: str, available: set[str], what: str) -> str:
    """``"2.5"`` means the newest 2.5.x published, as the SDK's version aliases do."""
    requested = str(requested).strip()
    if requested in available:
        return requested
    patches = [v for v in available if v.rsplit(".", 1)[0] == requested]
    if patches:
        return max(patches, key=lambda v: tuple(int(p) for p in v.split(".")))
    ordered = sorted(available, key=lambda v: tuple(int(p) for p in v.split(".")))
    raise ConfigurationError(f"{what} version {requested!r} has no SageMaker Deep Learning Container; "
                             f"supported: {', '.join(ordered)}")


def _check_python(requested: str | None, built_for: str, what: str) -> None:
    if requested is not None and requested != built_for:
        raise ConfigurationError(f"the {what} image is built for {built_for} only, not {requested!r}: "
                                 f"pass py_version={built_for!r} or leave it out")
