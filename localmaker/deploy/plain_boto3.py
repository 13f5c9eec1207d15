"""Plain boto3 beside a local Session, on a machine with no AWS set-up.

The README's readers often have no ~/.aws at all. There, ``boto3.client("sagemaker-runtime",
endpoint_url=session.endpoint_url)`` raises NoRegionError, then NoCredentialsError, although the control
plane needs neither. A local Session therefore fills in what boto3 cannot find, in ``os.environ``, as
`localmaker up` tells its users to export. It never replaces anything boto3 does find (a variable, a
profile, SSO, an instance role): a user's real configuration keeps working for real AWS calls.
"""

from __future__ import annotations

import logging
import os

import boto3

from localmaker.errors import ConfigurationError

logger = logging.getLogger(__name__)

# Not the `testing` pair that `localmaker up` prints and tests set on purpose: a value of its own tells a later
# target='aws' session that these credentials came from here, not from the user. Any key reaches the control
# plane's account, 123456789012, as moto maps every key it did not issue.
SUPPLIED_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "LOCALMAKERNOTAWS", "AWS_SECRET_ACCESS_KEY": "localmaker-local-only"}


def supply_missing_aws_defaults(region: str) -> list[str]:
    """Export ``AWS_DEFAULT_REGION`` and dummy credentials, each only where boto3's own chain finds none."""
    probe = boto3.Session()
    supplied: list[str] = []
    if not probe.region_name:
        os.environ["AWS_DEFAULT_REGION"] = region
        supplied.append("AWS_DEFAULT_REGION")
    if probe.get_credentials() is None:
        os.environ.update(SUPPLIED_CREDENTIALS)
        supplied.extend(SUPPLIED_CREDENTIALS)
    if supplied:
        logger.info("boto3 found no AWS configuration; set %s for plain boto3 clients of the local control "
                    "plane", ", ".join(supplied))
    return supplied


def refuse_supplied_credentials(session: boto3.Session) -> None:
    """target='aws' with the dummy credentials a local Session exported would fail at AWS, far from here."""
    credentials = session.get_credentials()
    if credentials is not None and credentials.access_key == SUPPLIED_CREDENTIALS["AWS_ACCESS_KEY_ID"]:
        raise ConfigurationError("target='aws' found only the dummy credentials a local Session set because boto3 "
                                 "found none: run `aws configure` or `aws sso login`, set AWS_PROFILE, or pass "
                                 "boto_session=boto3.Session(...)")
