"""The error every layer of the local server raises, and the codes it answers.

The service's full code list is not documented (see the API contract); the codes
below are the documented ones where one exists, and self-explanatory names otherwise.
"""

from __future__ import annotations

SUCCESS_MESSAGE = "The API call was executed successfully."

# HTTP 400
INVALID_PARAMETER = "InvalidParameter"
MISSING_PARAMETER = "MissingParameter"
# HTTP 404
COLLECTION_NOT_FOUND = "NotFound.VikingdbCollection"
INDEX_NOT_FOUND = "NotFound.VikingdbIndex"
API_NOT_FOUND = "NotFound.Api"
# HTTP 405
METHOD_NOT_ALLOWED = "MethodNotAllowed"
# HTTP 401: one code per reason a signature or key is refused
MISSING_AUTHENTICATION_TOKEN = "MissingAuthenticationToken"
INVALID_AUTHORIZATION = "InvalidAuthorization"
INVALID_ACCESS_KEY = "InvalidAccessKey"
INVALID_CREDENTIAL_SCOPE = "InvalidCredentialScope"
REQUEST_EXPIRED = "RequestExpired"
CONTENT_SHA256_MISMATCH = "ContentSha256Mismatch"
SIGNATURE_DOES_NOT_MATCH = "SignatureDoesNotMatch"
SECURITY_TOKEN_NOT_SIGNED = "SecurityTokenNotSigned"
INVALID_API_KEY = "InvalidApiKey"
# HTTP 429 / 5xx
QUOTA_EXCEEDED = "QuotaExceeded"
SERVICE_UNAVAILABLE = "ServiceUnavailable"
INTERNAL_ERROR = "InternalError"


class ApiError(Exception):
    """A non-200 answer: HTTP status, the envelope's ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError(400, INVALID_PARAMETER, message)


def missing(message: str) -> ApiError:
    return ApiError(400, MISSING_PARAMETER, message)


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)
