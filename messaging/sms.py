"""SMS through Tencent Cloud SMS (短信, API SendSms 2021-01-11), with its Python SDK.

Why Tencent Cloud rather than Alibaba Cloud's dysmsapi: its SDK is two small pure-Python packages
on `requests` (Alibaba's pulls in its Tea/Darabonba runtime, aiohttp and more), it signs with the
documented TC3-HMAC-SHA256 (checked by our stand-in independently), and its endpoint and scheme
are plain settings of `HttpProfile`, so the real SDK code runs against the local stand-in.

The only module that imports `tencentcloud`. SDK facts this module relies on (3.1.x):
- `HttpProfile(protocol="http"|"https", endpoint=HOST[:PORT][/PATH])`: the request goes to
  `protocol://endpoint` as is, and the signed `Host` header is `endpoint` verbatim; the signed
  canonical URI is always "/". The sandbox stand-in, mounted at a path of our app, is reached
  with a path in the endpoint.
- every failure is a `TencentCloudSDKException(code, message, requestId)`: the server's
  `Response.Error` with its RequestId; "ClientNetworkError" (no answer, timeout) or
  "ServerNetworkError" (an HTTP status other than 200) without one; any other exception while
  reading the reply is wrapped under its type's name, also without one.
- per-number refusals (rate limits, a wrong or blacklisted number) are not errors: the call
  succeeds and `SendStatusSet[i].Code` is not "Ok".
Nothing here touches our database; no secret, and no phone number in full, is logged or put in
an error.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111.models import SendSmsRequest
from tencentcloud.sms.v20210111.sms_client import SmsClient

from messaging.base import DeliveryError

DEFAULT_ENDPOINT = "https://sms.tencentcloudapi.com"
DEFAULT_REGION = "ap-guangzhou"
MAINLAND_PHONE = re.compile(r"^1[3-9][0-9]{9}$")
TEMPLATE_ID = re.compile(r"^[0-9]{1,20}$")
MAX_PARAMS = 20  # far beyond any template of ours; Tencent's own limit is the template's
# Codes worth another try later: Tencent's internal errors and its rate limits (per number per
# 30 s / hour / day, per app per day, API calls per second). Everything else it refuses (a
# wrong number, template, signature, parameters, an empty package, a blacklisted number, the
# credentials) stays refused however often it is sent.
TRANSIENT_PREFIXES = ("InternalError", "RequestLimitExceeded", "LimitExceeded",
                      "ResourceUnavailable", "ResourceInsufficient")
PERMANENT_CODES = frozenset({"LimitExceeded.PhoneNumberCountLimit"})  # too many numbers at once
NO_ANSWER_CODES = frozenset({"ClientNetworkError", "ServerNetworkError"})


def is_transient(code: str) -> bool:
    """Whether Tencent Cloud's error `code` may clear by itself (see TRANSIENT_PREFIXES)."""
    return code not in PERMANENT_CODES and code.split(".", 1)[0] in TRANSIENT_PREFIXES


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """"https://sms.tencentcloudapi.com" → ("https", "sms.tencentcloudapi.com");
    "http://127.0.0.1:8000/sandbox/sms" → ("http", "127.0.0.1:8000/sandbox/sms/"): the SDK's
    (protocol, endpoint). A bare host means https. ValueError for anything else."""
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment:
        raise ValueError("the SMS endpoint must be http(s)://host[:port][/path]")
    path = parts.path.rstrip("/")
    return parts.scheme, parts.netloc + (path + "/" if path else "")


class SmsSender:
    """Sends one templated SMS at a time from the SMS application `sdk_app_id` (短信 SdkAppId)
    under the approved signature `sign_name` (签名), with the API key pair of a Tencent Cloud
    account (SecretId/SecretKey, ideally a sub-account allowed only sms:SendSms).

    Blocking (one HTTPS request of at most `timeout_s`): call it from a thread, not the loop.
    Thread-safe: each send builds its own SDK client."""

    def __init__(self, secret_id: str, secret_key: str, sdk_app_id: str, sign_name: str, *,
                 endpoint: str = DEFAULT_ENDPOINT, region: str = DEFAULT_REGION,
                 timeout_s: int = 10) -> None:
        if not (secret_id and secret_key and sdk_app_id and sign_name):
            raise ValueError("SMS needs a SecretId, a SecretKey, an SdkAppId and a signature")
        self.sdk_app_id, self.sign_name, self.region = sdk_app_id, sign_name, region
        self.protocol, self.endpoint = split_endpoint(endpoint)
        self.timeout_s = timeout_s
        self._credential = Credential(secret_id, secret_key)

    def send(self, phone: str, template_id: str, params: list[str]) -> str:
        """Send the approved template `template_id` filled with `params` ({1}, {2}, … in order)
        to the mainland mobile `phone` (11 digits). Returns Tencent's SerialNo of the message.

        Raises DeliveryError: permanent for a malformed phone, template id or parameters (not
        sent at all) and for what Tencent refuses for good; not permanent for no answer, a
        timeout, an unreadable reply, Tencent's internal errors and its rate limits."""
        if not isinstance(phone, str) or not MAINLAND_PHONE.match(phone):
            raise DeliveryError("BAD_PHONE", "not an 11-digit mainland mobile number",
                                permanent=True)
        if not isinstance(template_id, str) or not TEMPLATE_ID.match(template_id):
            raise DeliveryError("BAD_TEMPLATE", "the template id must be Tencent's digits",
                                permanent=True)
        if len(params) > MAX_PARAMS or not all(isinstance(p, str) for p in params):
            raise DeliveryError("BAD_PARAMS", "template parameters must be a few strings",
                                permanent=True)
        request = SendSmsRequest()
        request.PhoneNumberSet = ["+86" + phone]
        request.SmsSdkAppId = self.sdk_app_id
        request.SignName = self.sign_name
        request.TemplateId = template_id
        request.TemplateParamSet = list(params)
        try:
            response = self._client().SendSms(request)
        except TencentCloudSDKException as exc:
            raise _delivery_error(exc) from None
        statuses = response.SendStatusSet or []
        if len(statuses) != 1:
            raise DeliveryError("MALFORMED_REPLY", "SendSms answered without one send status",
                                permanent=False)
        status = statuses[0]
        if status.Code != "Ok":
            raise DeliveryError(status.Code or "UNKNOWN", status.Message or "",
                                permanent=not is_transient(status.Code or "InternalError"))
        if not status.SerialNo:
            raise DeliveryError("MALFORMED_REPLY", "SendSms answered Ok without a SerialNo",
                                permanent=False)
        return status.SerialNo

    def _client(self) -> SmsClient:
        http = HttpProfile(protocol=self.protocol, endpoint=self.endpoint,
                           reqTimeout=self.timeout_s)
        return SmsClient(self._credential, self.region,
                         ClientProfile(httpProfile=http, language="zh-CN"))


def _delivery_error(exc: TencentCloudSDKException) -> DeliveryError:
    code, message = str(exc.get_code() or ""), str(exc.get_message() or "")
    if exc.get_request_id() is None:  # Tencent did not answer (or not with its JSON)
        if code in NO_ANSWER_CODES:
            return DeliveryError("NETWORK", f"{code}: {message[:200]}", permanent=False)
        return DeliveryError("MALFORMED_REPLY", f"{code}: {message[:200]}", permanent=False)
    return DeliveryError(code, message, permanent=not is_transient(code))
