"""The identity tests run the real app over HTTP (a live server: the SMS goes from our Tencent
Cloud client to the SMS stand-in mounted in the same app, over the wire) or in-process."""

from __future__ import annotations

import re

import httpx
import pytest

from standins.sms import clear_outbox, outbox
from tests.factories import EstateFactory

CODE_IN_SMS = re.compile(r"验证码为(\d{6})")


@pytest.fixture
def live(stack):
    """The web app served on the test's port, with its messengers (SMS to the stand-in)."""
    from app.messaging_setup import build_messengers

    stack.start_web()
    if getattr(stack.app.state, "messengers", None) is None:
        stack.app.state.messengers = build_messengers(stack.settings)
    clear_outbox(stack.settings.var_dir)
    return stack


@pytest.fixture
def web(live):
    """A phone browser (its own cookies) on the live app."""
    with httpx.Client(base_url=live.base_url, follow_redirects=False, timeout=15) as c:
        yield c


@pytest.fixture
def estate(engine):
    return EstateFactory(engine)


@pytest.fixture
def gateway(estate):
    return estate.gateway("127.0.0.1", 1)


def sms_to(settings, phone: str) -> list[str]:
    """The texts the SMS stand-in delivered to `phone`, oldest first."""
    return [m["text"] for m in outbox(settings.var_dir) if m["phone"] == phone]


def last_code(settings, phone: str) -> str:
    texts = sms_to(settings, phone)
    assert texts, f"no SMS to {phone}"
    found = CODE_IN_SMS.search(texts[-1])
    assert found, texts[-1]
    return found.group(1)
