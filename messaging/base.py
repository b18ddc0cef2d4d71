"""What every messenger raises when a message could not be handed to its provider."""

from __future__ import annotations


class DeliveryError(Exception):
    """The provider did not take the message.

    `code` is the provider's own error code as text (Tencent Cloud's "FailedOperation.…",
    WeChat's errcode such as "43004") or ours ("NETWORK", "MALFORMED_REPLY", "BAD_PHONE", …);
    `message` says what happened in words, without any secret, token or full phone number.
    `permanent`: True when sending the same message again cannot succeed (a refused phone,
    template, signature or recipient, an exhausted package); False when a later try may
    (network, timeout, the provider's internal error, a rate limit)."""

    def __init__(self, code: str, message: str, *, permanent: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.permanent = permanent

    def __repr__(self) -> str:
        return (f"DeliveryError(code={self.code!r}, message={self.message!r}, "
                f"permanent={self.permanent})")
