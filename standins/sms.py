"""Tencent Cloud SMS (SendSms, API 2021-01-11) played locally, for the demo and the tests.

`make_sms_app(standin)` is an ASGI app answering Tencent Cloud API 3.0's wire format: a JSON POST
to "/" with the X-TC-* headers and a TC3-HMAC-SHA256 `Authorization`, answered with HTTP 200 and
`{"Response": {..., "RequestId"}}`. It checks what Tencent checks, in its order, with its error
codes and (for X-TC-Language zh-CN) its Chinese messages:
- the signature, computed here from Tencent's documented rules with hmac/hashlib, not with the
  SDK, so the two implementations check each other: AuthFailure.InvalidAuthorization for a
  malformed header, AuthFailure.SecretIdNotFound for an unknown SecretId,
  AuthFailure.SignatureExpire beyond 5 minutes of skew, AuthFailure.SignatureFailure for a
  wrong key or a body changed after signing;
- the action, version and region; the SmsSdkAppId, the signature name (签名), the template and
  its parameters (count, length; digits only for a verification-code template);
- each phone number: a malformed one gets its own SendStatus with
  InvalidParameterValue.IncorrectPhoneNumber, as Tencent answers per number.
Each message sent is recorded in the outbox (standins/store.py, readable from any process) with
the text the phone shows: 【签名】 and the template filled in. `fail_next(var_dir, n)` makes the
next n sends that would succeed fail, transiently (InternalError.Timeout) or permanently
(FailedOperation.PhoneNumberInBlacklist), or with any code given.
Nothing here touches our database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from standins import store

CHANNEL = "sms"
SANDBOX_SDK_APP_ID = "1400000001"
SANDBOX_SIGN_NAME = "费控电费"
API_VERSION = "2021-01-11"
REGIONS = frozenset({"ap-guangzhou", "ap-beijing", "ap-nanjing"})
MAX_SKEW_S = 300
PARAM_MAX_CHARS = 35  # an enterprise account's limit per template variable
CODE_TEMPLATE_MAX_DIGITS = 6
TRANSIENT_CODE = "InternalError.Timeout"
PERMANENT_CODE = "FailedOperation.PhoneNumberInBlacklist"
# The sandbox's approved templates ({n} is the n-th parameter). A verification-code template
# takes 0–6 digits as its code, as Tencent's do.
SANDBOX_TEMPLATES: dict[str, str] = {
    "2000001": "您的验证码为{1}，{2}分钟内有效，请勿泄露给他人。",
    "2000002": "您的户号{1}电费余额为{2}元，已低于提醒金额，请及时充值。",
    "2000003": "您的户号{1}电费余额已用尽，将于{2}停电，请尽快充值。",
    "2000004": "您的户号{1}已于{2}欠费停电，充值{3}元即可恢复供电。",
    "2000005": "您的户号{1}已于{2}恢复供电，当前余额{3}元。",
    "2000006": "您的户号{1}充值{2}元已到账，当前余额{3}元。",
    "2000007": "您的户号{1}已使用应急用电{2}元，将从下次充值中扣回。",
}
SANDBOX_CODE_TEMPLATES = frozenset({"2000001"})
PER_NUMBER_CODES = frozenset({  # refusals Tencent gives per number, in SendStatusSet
    "InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.PhoneNumberInBlacklist",
    "LimitExceeded.PhoneNumberThirtySecondLimit", "LimitExceeded.PhoneNumberOneHourLimit",
    "LimitExceeded.PhoneNumberDailyLimit", "LimitExceeded.PhoneNumberSameContentDailyLimit",
    "LimitExceeded.DeliveryFrequencyLimit", "FailedOperation.InsufficientBalanceInSmsPackage",
})
MESSAGES = {  # code: (English, 中文), as Tencent words them
    "AuthFailure.InvalidAuthorization": (
        "Authorization in the request header is invalid.", "请求头部的 Authorization 不符合腾讯云标准。"),
    "AuthFailure.SecretIdNotFound": (
        "The SecretId is not found, please ensure that your SecretId is correct.",
        "密钥不存在。请检查密钥是否填写正确，注意前后不得有空格。"),
    "AuthFailure.SignatureExpire": (
        "Signature expired. Timestamp and server time cannot differ by more than five minutes.",
        "签名过期。Timestamp 和服务器时间相差不得超过五分钟，请检查本地时间是否和标准时间同步。"),
    "AuthFailure.SignatureFailure": (
        "The provided credentials could not be validated. Please check your signature is "
        "correct.", "请求签名验证失败，请检查您的签名计算是否正确。"),
    "InvalidAction": ("The requested action does not exist.", "接口不存在。"),
    "NoSuchVersion": ("The requested version does not exist.", "接口版本不存在。"),
    "UnsupportedRegion": ("The action does not support this region.", "接口不支持所传地域。"),
    "MissingParameter": ("The parameter `{name}` is missing.", "缺少参数`{name}`。"),
    "InvalidParameter": ("The parameter `{name}` is invalid.", "参数`{name}`错误。"),
    "InvalidParameterValue.SdkAppIdNotExist": (
        "SdkAppId does not exist.", "SdkAppId 不存在。"),
    "FailedOperation.SignatureIncorrectOrUnapproved": (
        "The signature format is incorrect or the signature is not approved.",
        "签名未审批或格式错误。"),
    "FailedOperation.TemplateIncorrectOrUnapproved": (
        "The template format is incorrect or the template is not approved.",
        "模板未审批或内容不匹配。"),
    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate": (
        "The request content does not match the approved template content.",
        "请求内容与审核通过的模板内容不匹配。"),
    "InvalidParameterValue.TemplateParameterFormatError": (
        "For verification code templates, the variables can only be 0–6 digits.",
        "验证码模板参数格式错误，验证码类模板，模板变量只能传入0-6位（包括6位）纯数字。"),
    "InvalidParameterValue.TemplateParameterLengthLimit": (
        "The length of a single template variable exceeds the limit.", "单个模板变量字符数超过限制。"),
    "LimitExceeded.PhoneNumberCountLimit": (
        "The number of phone numbers in one request exceeds the upper limit of 200.",
        "调用接口单次提交的手机号个数超过200个。"),
    "InvalidParameterValue.IncorrectPhoneNumber": ("invalid number", "手机号格式错误。"),
    "FailedOperation.PhoneNumberInBlacklist": (
        "The mobile number is in the blocklist.", "手机号在免打扰名单库中。"),
    "InternalError.Timeout": ("Request timed out.", "请求下发短信超时。"),
    "FailedOperation.InsufficientBalanceInSmsPackage": (
        "The package balance is insufficient.", "套餐包余量不足。"),
}
_AUTH = re.compile(r"^TC3-HMAC-SHA256 Credential=([^/,\s]+)/(\d{4}-\d{2}-\d{2})/([a-z0-9]+)"
                   r"/tc3_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")
_MAINLAND = re.compile(r"^(?:\+86|0086|86)?(1[3-9][0-9]{9})$")
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class SmsKeys:
    secret_id: str
    secret_key: str


def ensure_sms_sandbox_keys(directory: Path) -> SmsKeys:
    """The sandbox's Tencent Cloud API key pair (SecretId "AKID…" of 36 characters, SecretKey of
    32), created 0600 the first time in `directory` (the sandbox keys' directory)."""
    from standins.alipay_sandbox import _create_if_absent  # the sandbox keys' one careful writer

    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "tencent_sms_key"
    if not path.exists():
        secret_id = "AKID" + "".join(secrets.choice(_ALNUM) for _ in range(32))
        secret_key = "".join(secrets.choice(_ALNUM) for _ in range(32))
        _create_if_absent(path, f"{secret_id}\n{secret_key}\n", mode=0o600)
    lines = path.read_text(encoding="ascii").split()
    if len(lines) != 2 or not lines[0].startswith("AKID"):
        raise ValueError(f"{path}: the sandbox SMS key file must hold a SecretId and a SecretKey")
    return SmsKeys(lines[0], lines[1])


class SmsRefusal(Exception):
    """Tencent's `Response.Error`: `code` and its message's arguments."""

    def __init__(self, code: str, **args: str) -> None:
        super().__init__(code)
        self.code, self.args_ = code, args


@dataclass
class SmsStandin:
    """Tencent Cloud SMS for one account (`keys`) with one SMS application (`sdk_app_id`), one
    approved signature and the approved `templates`; its outbox and failures under `var_dir`."""

    var_dir: Path
    keys: SmsKeys
    sdk_app_id: str = SANDBOX_SDK_APP_ID
    sign_name: str = SANDBOX_SIGN_NAME
    templates: dict[str, str] = field(default_factory=lambda: dict(SANDBOX_TEMPLATES))
    code_templates: frozenset[str] = SANDBOX_CODE_TEMPLATES
    clock: Callable[[], float] = time.time

    def handle(self, *, method: str, path: str, query: str, headers: dict[str, str],
               body: bytes) -> dict:
        """The `Response` object for one API request (errors included: Tencent answers them
        with HTTP 200 too). `headers` with lower-case names; `path` relative to the stand-in."""
        request_id = str(uuid.uuid4())
        try:
            self._authenticate(method, path, query, headers, body)
            result = self._send_sms(headers, body)
        except SmsRefusal as refusal:
            english, chinese = MESSAGES.get(refusal.code, (refusal.code, refusal.code))
            text = chinese if headers.get("x-tc-language") == "zh-CN" else english
            return {"Error": {"Code": refusal.code, "Message": text.format(**refusal.args_)},
                    "RequestId": request_id}
        return {**result, "RequestId": request_id}

    # -- TC3-HMAC-SHA256, as Tencent documents it

    def _authenticate(self, method, path, query, headers, body) -> None:
        found = _AUTH.match(headers.get("authorization", ""))
        if found is None:
            raise SmsRefusal("AuthFailure.InvalidAuthorization")
        secret_id, date, service, signed_headers, signature = found.groups()
        if not hmac.compare_digest(secret_id.encode(), self.keys.secret_id.encode()):
            raise SmsRefusal("AuthFailure.SecretIdNotFound")
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            raise SmsRefusal("MissingParameter", name="X-TC-Timestamp") from None
        if abs(self.clock() - timestamp) > MAX_SKEW_S:
            raise SmsRefusal("AuthFailure.SignatureExpire")
        names = signed_headers.split(";")
        if "content-type" not in names or "host" not in names or names != sorted(names):
            raise SmsRefusal("AuthFailure.InvalidAuthorization")
        day = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
        if date != day or service != "sms":
            raise SmsRefusal("AuthFailure.SignatureFailure")
        canonical_headers = "".join(f"{n}:{headers.get(n, '').strip().lower()}\n" for n in names)
        payload = (b"UNSIGNED-PAYLOAD" if headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD"
                   else body)
        canonical = "\n".join([method, path, query if method == "GET" else "",
                               canonical_headers, signed_headers,
                               hashlib.sha256(payload).hexdigest()])
        to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), f"{date}/{service}/tc3_request",
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("TC3" + self.keys.secret_key).encode()
        for part in (date, service, "tc3_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise SmsRefusal("AuthFailure.SignatureFailure")

    # -- SendSms

    def _send_sms(self, headers: dict[str, str], body: bytes) -> dict:
        if headers.get("x-tc-action") != "SendSms":
            raise SmsRefusal("InvalidAction")
        if headers.get("x-tc-version") != API_VERSION:
            raise SmsRefusal("NoSuchVersion")
        if headers.get("x-tc-region") not in REGIONS:
            raise SmsRefusal("UnsupportedRegion")
        try:
            params = json.loads(body)
        except ValueError:
            raise SmsRefusal("InvalidParameter", name="body") from None
        if not isinstance(params, dict):
            raise SmsRefusal("InvalidParameter", name="body")
        for name in ("PhoneNumberSet", "SmsSdkAppId", "TemplateId"):
            if not params.get(name):
                raise SmsRefusal("MissingParameter", name=name)
        phones, values = params["PhoneNumberSet"], params.get("TemplateParamSet") or []
        if not isinstance(phones, list) or not all(isinstance(p, str) for p in phones):
            raise SmsRefusal("InvalidParameter", name="PhoneNumberSet")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SmsRefusal("InvalidParameter", name="TemplateParamSet")
        if len(phones) > 200:
            raise SmsRefusal("LimitExceeded.PhoneNumberCountLimit")
        if params["SmsSdkAppId"] != self.sdk_app_id:
            raise SmsRefusal("InvalidParameterValue.SdkAppIdNotExist")
        if params.get("SignName") != self.sign_name:
            raise SmsRefusal("FailedOperation.SignatureIncorrectOrUnapproved")
        template_id = str(params["TemplateId"])
        template = self.templates.get(template_id)
        if template is None:
            raise SmsRefusal("FailedOperation.TemplateIncorrectOrUnapproved")
        if len(values) != len(set(re.findall(r"\{(\d+)\}", template))):
            raise SmsRefusal("FailedOperation.TemplateParamSetNotMatchApprovedTemplate")
        if template_id in self.code_templates and not re.fullmatch(
                rf"[0-9]{{0,{CODE_TEMPLATE_MAX_DIGITS}}}", values[0] if values else ""):
            raise SmsRefusal("InvalidParameterValue.TemplateParameterFormatError")
        if any(len(v) > PARAM_MAX_CHARS for v in values):
            raise SmsRefusal("InvalidParameterValue.TemplateParameterLengthLimit")
        text = f"【{self.sign_name}】" + re.sub(
            r"\{(\d+)\}", lambda m: values[int(m.group(1)) - 1], template)
        fault_code = None  # a failure asked for by fail_next, given per number
        fault = store.take_fault(self.var_dir, CHANNEL)
        if fault is not None:
            permanent, fault_code = fault
            fault_code = fault_code or (PERMANENT_CODE if permanent else TRANSIENT_CODE)
            if fault_code not in PER_NUMBER_CODES:
                raise SmsRefusal(fault_code)
        statuses = []
        zh = headers.get("x-tc-language") == "zh-CN"
        for phone in phones:
            found = _MAINLAND.match(phone)
            refused = "InvalidParameterValue.IncorrectPhoneNumber" if found is None else fault_code
            if refused is not None:
                english, chinese = MESSAGES[refused] if refused in MESSAGES else (refused,) * 2
                statuses.append({"SerialNo": "", "PhoneNumber": phone, "Fee": 0,
                                 "SessionContext": params.get("SessionContext", ""),
                                 "Code": refused, "Message": chinese if zh else english,
                                 "IsoCode": "CN" if found else ""})
                continue
            serial = f"2433:{secrets.randbelow(10**28):028d}"
            store.record(self.var_dir, channel=CHANNEL, recipient=found.group(1),
                         template_id=template_id, params=values, text=text, ref=serial)
            statuses.append({"SerialNo": serial, "PhoneNumber": "+86" + found.group(1),
                             "Fee": 1 if len(text) <= 70 else math.ceil(len(text) / 67),
                             "SessionContext": params.get("SessionContext", ""), "Code": "Ok",
                             "Message": "send success", "IsoCode": "CN"})
        return {"SendStatusSet": statuses}


def make_sms_app(standin: SmsStandin) -> Starlette:
    """The stand-in's endpoint, to mount at any path (Tencent's API lives at "/")."""

    async def api(request: Request) -> JSONResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        response = await run_in_threadpool(
            standin.handle, method=request.method, path="/",
            query=request.url.query, headers=headers, body=body)
        return JSONResponse({"Response": response})

    return Starlette(routes=[Route("/", api, methods=["GET", "POST"])])


# -- for tests and the outbox page: any process, through the files under var_dir

def outbox(var_dir: Path) -> list[dict]:
    """Every SMS the stand-in accepted, oldest first: dicts of phone (11 digits), template_id,
    params (list of str), text (as the phone shows it), at (aware datetime, UTC), serial_no."""
    return [{"phone": m["recipient"], "template_id": m["template_id"], "params": m["params"],
             "text": m["text"], "at": m["at"], "serial_no": m["ref"]}
            for m in store.messages(var_dir, (CHANNEL,))]


def fail_next(var_dir: Path, n: int, permanent: bool = False, code: str | None = None) -> None:
    """The next `n` sends that would succeed fail: transiently (InternalError.Timeout, which
    the client takes as "try again later") or, if `permanent`, with
    FailedOperation.PhoneNumberInBlacklist; or with Tencent's `code` given. 0 cancels."""
    store.set_fault(var_dir, CHANNEL, n, permanent=permanent, code=code)


def clear_outbox(var_dir: Path) -> None:
    store.clear_messages(var_dir, (CHANNEL,))
