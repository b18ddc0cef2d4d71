"""Where the stand-ins are mounted in our web app (sandbox only), and where the clients they play
for are pointed: settings.base_url + one of these."""

SANDBOX_GATEWAY_PATH = "/sandbox/alipay/gateway.do"  # Alipay's cashier and its server API
SANDBOX_ALIPAY_BILL_PATH = "/sandbox/alipay/bill"  # where its bill download URLs point
WECHAT_STANDIN_PATH = "/sandbox/wechat/api"  # the stand-in of WeChat Pay's API
WECHAT_CASHIER_PATH = "/sandbox/wechat/h5"  # where the stand-in's h5_url sends the browser
WECHAT_OAUTH_STANDIN_PATH = "/sandbox/wechat/oauth"  # the stand-in of WeChat's web OAuth
WECHAT_JSAPI_CASHIER_PATH = "/sandbox/wechat/jsapi"  # the sandbox bridge's pay sheet
SMS_STANDIN_PATH = "/sandbox/sms"  # Tencent Cloud SMS's API
WECHAT_MESSAGES_STANDIN_PATH = "/sandbox/wechat/mp"  # api.weixin.qq.com/cgi-bin/… (messages)
OUTBOX_PATH = "/sandbox/outbox"  # the page of what the messaging stand-ins received
SANDBOX_KEYS_DIR = "sandbox-keys"  # under var_dir: the stand-ins' local keys
