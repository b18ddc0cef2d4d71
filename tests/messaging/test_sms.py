"""SMS through Tencent Cloud's real SDK (`SmsSender`) against the stand-in of SendSms served by
uvicorn on loopback, mounted at a path as in the sandbox: the stand-in checks the TC3-HMAC-SHA256
signature the SDK computed, the parameters, and records what it accepted in its outbox."""

import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from tencentcloud.common.credential import Credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111.models import SendSmsRequest
from tencentcloud.sms.v20210111.sms_client import SmsClient

from app.messaging_setup import build_messengers
from standins.mounts import messaging_mounts
from standins.paths import SMS_STANDIN_PATH
from app.settings import Settings
from messaging import DeliveryError, SmsSender
from messaging.sms import split_endpoint
from payments.serving import serve_in_thread
from standins.sms import (
    SANDBOX_SDK_APP_ID,
    SANDBOX_SIGN_NAME,
    SmsStandin,
    clear_outbox,
    ensure_sms_sandbox_keys,
    fail_next,
    make_sms_app,
    outbox,
)

PHONE = "13812345678"
LOW_BALANCE = "2000002"  # 您的户号{1}电费余额为{2}元，已低于提醒金额，请及时充值。
CODE = "2000001"  # 您的验证码为{1}，{2}分钟内有效，请勿泄露给他人。
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture
def var_dir(tmp_path):
    return tmp_path / "var"


@pytest.fixture
def keys(var_dir):
    return ensure_sms_sandbox_keys(var_dir / "sandbox-keys")


def serve(standin):
    return serve_in_thread(Starlette(routes=[Mount(SMS_STANDIN_PATH, app=make_sms_app(standin))]))


@pytest.fixture
def url(var_dir, keys):
    with serve(SmsStandin(var_dir, keys)) as base:
        yield base + SMS_STANDIN_PATH


def sender(url, keys, *, secret_id=None, secret_key=None, app_id=SANDBOX_SDK_APP_ID,
           sign=SANDBOX_SIGN_NAME, timeout_s=10):
    return SmsSender(secret_id or keys.secret_id, secret_key or keys.secret_key, app_id, sign,
                     endpoint=url, timeout_s=timeout_s)


def refused(send) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        send()
    return caught.value


def test_a_message_is_signed_checked_and_in_the_outbox(url, keys, var_dir):
    serial = sender(url, keys).send(PHONE, LOW_BALANCE, ["101020", "3.50"])
    [message] = outbox(var_dir)
    assert message["phone"] == PHONE and message["template_id"] == LOW_BALANCE
    assert message["params"] == ["101020", "3.50"]
    assert message["text"] == "【费控电费】您的户号101020电费余额为3.50元，已低于提醒金额，请及时充值。"
    assert message["serial_no"] == serial and serial.startswith("2433:")
    assert message["at"].tzinfo is not None and abs(message["at"].timestamp() - time.time()) < 60


def test_a_wrong_secret_key_is_refused_as_tencent_does_and_nothing_is_sent(url, keys, var_dir):
    error = refused(lambda: sender(url, keys, secret_key="x" * 32).send(PHONE, CODE, ["123456",
                                                                                        "5"]))
    assert error.code == "AuthFailure.SignatureFailure" and error.permanent
    assert error.message == "请求签名验证失败，请检查您的签名计算是否正确。"
    assert outbox(var_dir) == []


def test_an_unknown_secret_id_is_refused(url, keys, var_dir):
    error = refused(lambda: sender(url, keys, secret_id="AKID" + "0" * 32).send(
        PHONE, CODE, ["123456", "5"]))
    assert (error.code, error.permanent) == ("AuthFailure.SecretIdNotFound", True)
    assert outbox(var_dir) == []


def test_a_clock_five_minutes_off_is_refused(var_dir, keys):
    with serve(SmsStandin(var_dir, keys, clock=lambda: time.time() + 400)) as base:
        error = refused(lambda: sender(base + SMS_STANDIN_PATH, keys).send(
            PHONE, CODE, ["123456", "5"]))
    assert error.code == "AuthFailure.SignatureExpire"
    assert outbox(var_dir) == []


def captured_request(keys) -> tuple[dict, bytes]:
    """What the SDK sends for one SMS (headers, body), caught by a server that answers nothing
    useful: to be replayed, changed or not, to the stand-in."""
    caught = {}

    async def catch(request: Request) -> JSONResponse:
        caught["headers"] = {k: v for k, v in request.headers.items()
                             if k not in ("content-length", "connection")}
        caught["body"] = await request.body()
        return JSONResponse({"Response": {"Error": {"Code": "InternalError", "Message": "x"},
                                          "RequestId": "r"}})

    with serve_in_thread(Starlette(routes=[Mount(SMS_STANDIN_PATH, routes=[
            Route("/", catch, methods=["POST"])])])) as base:
        refused(lambda: sender(base + SMS_STANDIN_PATH, keys).send(PHONE, LOW_BALANCE,
                                                                    ["101020", "3.50"]))
    return caught["headers"], caught["body"]


def replay(url: str, headers: dict, body: bytes) -> dict:
    """The captured request again, with the Host header it was signed for (the stand-in checks
    the Host it is given, as Tencent checks the one it was reached at)."""
    reply = httpx.post(url + "/", content=body, headers=headers)
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    return reply.json()["Response"]


def test_a_body_changed_after_signing_is_refused(url, keys, var_dir):
    headers, body = captured_request(keys)  # signed for the capturing server's Host
    assert replay(url, headers, body)["SendStatusSet"][0]["Code"] == "Ok"  # as it was: sent
    tampered = body.replace(b'"3.50"', b'"350.00"')
    assert tampered != body
    error = replay(url, headers, tampered)["Error"]
    assert error["Code"] == "AuthFailure.SignatureFailure"
    assert [m["params"] for m in outbox(var_dir)] == [["101020", "3.50"]]


def test_a_changed_signed_header_is_refused(url, keys, var_dir):
    headers, body = captured_request(keys)
    headers["content-type"] = "application/json; charset=gbk"
    assert replay(url, headers, body)["Error"]["Code"] == "AuthFailure.SignatureFailure"
    headers["authorization"] = "HMAC " + headers["authorization"]
    assert replay(url, headers, body)["Error"]["Code"] == "AuthFailure.InvalidAuthorization"
    assert outbox(var_dir) == []


def test_fail_next_fails_transiently_then_sends(url, keys, var_dir):
    fail_next(var_dir, 2)
    for _ in range(2):
        error = refused(lambda: sender(url, keys).send(PHONE, LOW_BALANCE, ["101020", "3.50"]))
        assert (error.code, error.permanent) == ("InternalError.Timeout", False)
    assert outbox(var_dir) == []
    sender(url, keys).send(PHONE, LOW_BALANCE, ["101020", "3.50"])
    assert len(outbox(var_dir)) == 1


def test_fail_next_permanently_is_a_per_number_refusal(url, keys, var_dir):
    fail_next(var_dir, 1, permanent=True)
    error = refused(lambda: sender(url, keys).send(PHONE, LOW_BALANCE, ["101020", "3.50"]))
    assert (error.code, error.permanent) == ("FailedOperation.PhoneNumberInBlacklist", True)
    assert outbox(var_dir) == []


def test_rate_limits_are_not_permanent_an_empty_package_is(url, keys, var_dir):
    fail_next(var_dir, 1, code="LimitExceeded.PhoneNumberDailyLimit")
    error = refused(lambda: sender(url, keys).send(PHONE, LOW_BALANCE, ["101020", "3.50"]))
    assert (error.code, error.permanent) == ("LimitExceeded.PhoneNumberDailyLimit", False)
    fail_next(var_dir, 1, code="RequestLimitExceeded")
    error = refused(lambda: sender(url, keys).send(PHONE, LOW_BALANCE, ["101020", "3.50"]))
    assert (error.code, error.permanent) == ("RequestLimitExceeded", False)
    fail_next(var_dir, 1, code="FailedOperation.InsufficientBalanceInSmsPackage")
    error = refused(lambda: sender(url, keys).send(PHONE, LOW_BALANCE, ["101020", "3.50"]))
    assert (error.code, error.permanent) == ("FailedOperation.InsufficientBalanceInSmsPackage",
                                             True)
    assert outbox(var_dir) == []


@pytest.mark.parametrize("change, code", [
    ({"app_id": "1400999999"}, "InvalidParameterValue.SdkAppIdNotExist"),
    ({"sign": "别人的签名"}, "FailedOperation.SignatureIncorrectOrUnapproved"),
])
def test_a_wrong_application_or_signature_is_refused_for_good(url, keys, var_dir, change, code):
    error = refused(lambda: sender(url, keys, **change).send(PHONE, LOW_BALANCE, ["1", "2"]))
    assert (error.code, error.permanent) == (code, True)
    assert outbox(var_dir) == []


@pytest.mark.parametrize("template, params, code", [
    ("2999999", ["101020", "3.50"], "FailedOperation.TemplateIncorrectOrUnapproved"),
    (LOW_BALANCE, ["101020"], "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"),
    (CODE, ["12a456", "5"], "InvalidParameterValue.TemplateParameterFormatError"),
    (CODE, ["1234567", "5"], "InvalidParameterValue.TemplateParameterFormatError"),
    (LOW_BALANCE, ["1" * 36, "3.50"], "InvalidParameterValue.TemplateParameterLengthLimit"),
])
def test_a_template_or_parameters_tencent_refuses(url, keys, var_dir, template, params, code):
    error = refused(lambda: sender(url, keys).send(PHONE, template, params))
    assert (error.code, error.permanent) == (code, True)
    assert outbox(var_dir) == []


@pytest.mark.parametrize("phone", ["1381234567", "138123456789", "+8613812345678", "23812345678",
                                   "", "1381234567８"])
def test_a_phone_that_is_not_mainland_eleven_digits_is_not_sent(url, keys, var_dir, phone):
    error = refused(lambda: sender(url, keys).send(phone, LOW_BALANCE, ["101020", "3.50"]))
    assert (error.code, error.permanent) == ("BAD_PHONE", True)
    assert outbox(var_dir) == []


def test_the_standin_refuses_a_malformed_number_per_number(url, keys, var_dir):
    """Through the SDK directly: Tencent answers a bad number in its SendStatus, not as an
    error, and sends to the good ones of the same request."""
    protocol, endpoint = split_endpoint(url)
    client = SmsClient(Credential(keys.secret_id, keys.secret_key), "ap-guangzhou",
                       ClientProfile(httpProfile=HttpProfile(protocol=protocol,
                                                             endpoint=endpoint)))
    request = SendSmsRequest()
    request.PhoneNumberSet = ["+86123", "+8613912345678"]
    request.SmsSdkAppId, request.SignName = SANDBOX_SDK_APP_ID, SANDBOX_SIGN_NAME
    request.TemplateId, request.TemplateParamSet = LOW_BALANCE, ["101020", "3.50"]
    statuses = client.SendSms(request).SendStatusSet
    assert [(s.PhoneNumber, s.Code) for s in statuses] == [
        ("+86123", "InvalidParameterValue.IncorrectPhoneNumber"), ("+8613912345678", "Ok")]
    assert [m["phone"] for m in outbox(var_dir)] == ["13912345678"]


def test_no_server_is_a_transient_network_error(keys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        error = refused(lambda: sender(f"http://127.0.0.1:{port}/sandbox/sms", keys).send(
            PHONE, LOW_BALANCE, ["101020", "3.50"]))
    assert (error.code, error.permanent) == ("NETWORK", False)
    assert PHONE not in error.message


def test_a_server_that_never_answers_times_out_transiently(keys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()  # accepts into the backlog, never answers
        error = refused(lambda: sender(f"http://127.0.0.1:{s.getsockname()[1]}", keys,
                                       timeout_s=1).send(PHONE, LOW_BALANCE, ["1", "2"]))
    assert (error.code, error.permanent) == ("NETWORK", False)


def test_a_reply_that_is_not_tencents_is_transient(keys):
    async def garbage(request: Request) -> JSONResponse:
        return JSONResponse({"unexpected": True})

    with serve_in_thread(Starlette(routes=[Route("/", garbage, methods=["POST"])])) as base:
        error = refused(lambda: sender(base, keys).send(PHONE, LOW_BALANCE, ["1", "2"]))
    assert (error.code, error.permanent) == ("MALFORMED_REPLY", False)


def test_outbox_and_failures_cross_processes(url, keys, var_dir):
    """Another process asks for a failure and reads the outbox the server's process wrote."""
    def python(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout

    python(f"from standins.sms import fail_next; fail_next({str(var_dir)!r}, 1)")
    error = refused(lambda: sender(url, keys).send(PHONE, LOW_BALANCE, ["101020", "3.50"]))
    assert error.permanent is False
    sender(url, keys).send(PHONE, LOW_BALANCE, ["101020", "4.00"])
    seen = json.loads(python("import json; from standins.sms import outbox; "
                             f"print(json.dumps(outbox({str(var_dir)!r}), default=str))"))
    assert [(m["phone"], m["params"]) for m in seen] == [(PHONE, ["101020", "4.00"])]
    clear_outbox(var_dir)
    assert outbox(var_dir) == []


def test_sends_from_threads_each_land_once(url, keys, var_dir):
    sms = sender(url, keys)
    threads = [threading.Thread(target=sms.send, args=(f"1391234567{i}", LOW_BALANCE,
                                                        [str(i), "1.00"])) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(m["params"][0] for m in outbox(var_dir)) == [str(i) for i in range(8)]


def test_the_sandbox_wiring_points_the_real_client_at_the_mounted_standin(var_dir):
    settings = Settings(var_dir=var_dir, database_url="sqlite://")
    with serve_in_thread(Starlette(routes=messaging_mounts(settings))) as base:
        live = settings.model_copy(update={"public_url": base})
        sms = build_messengers(live).sms
        assert sms is not None and sms.endpoint == base.removeprefix("http://") + "/sandbox/sms/"
        sms.send(PHONE, live.sms_template_payment, ["101020", "50.00", "45.00"])
    assert [m["text"] for m in outbox(var_dir)] == [
        "【费控电费】您的户号101020充值50.00元已到账，当前余额45.00元。"]


def test_with_merchant_keys_nothing_is_played(var_dir, tmp_path):
    settings = Settings(var_dir=var_dir, database_url="sqlite://", alipay_app_id="2021000000001")
    assert messaging_mounts(settings) == []
    assert build_messengers(settings).sms is None
    real = settings.model_copy(update={"sms_secret_id": "AKIDreal", "sms_secret_key": "k" * 32,
                                       "sms_sdk_app_id": "1400123456", "sms_sign_name": "某物业"})
    sms = build_messengers(real).sms
    assert (sms.protocol, sms.endpoint, sms.sdk_app_id) == ("https", "sms.tencentcloudapi.com",
                                                           "1400123456")


def test_real_sms_names_what_is_missing(var_dir):
    settings = Settings(var_dir=var_dir, database_url="sqlite://", sms_secret_id="AKIDreal")
    with pytest.raises(ValueError) as missing:
        build_messengers(settings)
    assert str(missing.value) == ("SMS needs FEIKONG_SMS_SDK_APP_ID, FEIKONG_SMS_SIGN_NAME, "
                                  "FEIKONG_SMS_SECRET_KEY")
