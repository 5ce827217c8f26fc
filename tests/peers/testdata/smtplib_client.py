#!/usr/bin/env python3
"""Sends one message with Python's smtplib and prints the replies as JSON.

Usage: smtplib_client.py < request.json

The request is a JSON object:
  mode      "smtp" or "lmtp"
  host      host name or address (smtp), or the unix socket path (lmtp)
  port      TCP port (smtp)
  starttls  bool: issue STARTTLS and verify the server against cafile
  cafile    PEM file of the CA that signed the server's certificate
  user, password   log in (smtplib picks the mechanism) when user is set
  sender, rcpts    the envelope
  message   path of the message file (bytes sent as they are; smtplib
            turns bare LF into CRLF and stuffs dots)

The result on stdout is a JSON object:
  rcpt      [[code, text], ...] one per RCPT
  data      [[code, text], ...] the reply to the message: one in SMTP mode;
            in LMTP mode one per accepted recipient, in RCPT order
  tls       bool: the session ran over TLS
  auth      the login reply, [code, text], or null

smtplib.LMTP.data() reads only the first reply after the final dot (see
the Python documentation of LMTP and RFC 2033 section 4.2), so in LMTP
mode this script reads the remaining per-recipient replies itself with
getreply().
"""

import json
import smtplib
import ssl
import sys


def text(msg):
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


def main():
    req = json.load(sys.stdin)
    if req["mode"] == "lmtp":
        # A host starting with "/" is a unix socket for smtplib.LMTP.
        client = smtplib.LMTP(req["host"], timeout=60)
    else:
        client = smtplib.SMTP(req["host"], req["port"], local_hostname="client.example.test", timeout=60)
    out = {"rcpt": [], "data": [], "tls": False, "auth": None}
    try:
        code, msg = client.ehlo("client.example.test")
        if code != 250:
            raise SystemExit("EHLO/LHLO: %d %s" % (code, text(msg)))
        if req.get("starttls"):
            ctx = ssl.create_default_context(cafile=req["cafile"])
            client.starttls(context=ctx)
            client.ehlo("client.example.test")
            out["tls"] = True
        if req.get("user"):
            code, msg = client.login(req["user"], req["password"])
            out["auth"] = [code, text(msg)]
        with open(req["message"], "rb") as f:
            message = f.read()
        code, msg = client.mail(req["sender"])
        if code != 250:
            raise SystemExit("MAIL: %d %s" % (code, text(msg)))
        accepted = 0
        for rcpt in req["rcpts"]:
            code, msg = client.rcpt(rcpt)
            out["rcpt"].append([code, text(msg)])
            if code // 100 == 2:
                accepted += 1
        if accepted:
            code, msg = client.data(message)
            out["data"].append([code, text(msg)])
            if req["mode"] == "lmtp":
                for _ in range(accepted - 1):
                    code, msg = client.getreply()
                    out["data"].append([code, text(msg)])
        client.quit()
    finally:
        client.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
