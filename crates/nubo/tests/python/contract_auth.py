"""Credentials for schemathesis's run against a region (tests/openapi_contract.rs).

Each operation gets the credentials its security requirement names: the
operator token, or an access key as `Bearer KEY_ID:SECRET`. Operations that
take the caller's own credentials away (closing the account, disabling or
deleting its keys) act for a second account, together with the rest of the
keys API so that the keys they find are that account's. The first account
keeps its key for the whole run.
"""

import os

import schemathesis

SPARE_ACCOUNT_OPERATIONS = {
    "account_close",
    "key_list",
    "key_create",
    "key_show",
    "key_update",
    "key_delete",
}


def _token(operation):
    schemes = {
        name
        for requirement in operation.definition.raw.get("security") or []
        for name in requirement
    }
    if "operator" in schemes:
        return os.environ["NUBO_CONTRACT_OPERATOR"]
    if operation.definition.raw.get("operationId") in SPARE_ACCOUNT_OPERATIONS:
        return os.environ["NUBO_CONTRACT_SPARE_BEARER"]
    if "bearer" in schemes:
        return os.environ["NUBO_CONTRACT_BEARER"]
    return None


# Static credentials: nothing to refresh, and a 401 is an answer to check,
# not a reason to fetch them again.
@schemathesis.auth(refresh_interval=None, retry_on=[])
class RegionCredentials:
    def get(self, case, context):
        return _token(case.operation)

    def set(self, case, data, context):
        if data is not None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
