"""Endpoint contract testing: ``localmaker contract-test`` probes a deployed container against its
OpenAPI document (which the container itself serves; see ``local_endpoint.openapi_document``)."""
