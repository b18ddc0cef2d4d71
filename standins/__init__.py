"""Local stand-ins of the outside services (Tencent Cloud SMS, WeChat's messages API, and the
payment providers), speaking their real wire formats so that the real client code runs in the
tests and the demo. Served only in sandbox mode; `payments/` and `messaging/` never import this
package."""
