"""Endpoint contract testing: ``localmaker contract-test`` and the container's OpenAPI document.

Nothing is imported here: the container app imports ``openapi_document`` alone, and must not pay for
the deploy layer that the contract test itself needs.
"""
