#!/usr/bin/env python3
"""Runs the corpus (testdata/*.corpus) through Dovecot Pigeonhole's sieve-test
and sievec and prints, per case, where Pigeonhole's outcome differs from the
case's expectation. A maintainer's tool, not a test: Pigeonhole's listing
differs in form (and its sieve-test does not apply the vacation rules of
RFC 5230 section 4.5), so differences are read by hand; the knowing ones are
in ../doc.go.

Usage (as root, with dovecot-sieve installed):
    python3 sieve/testdata/pigeonhole-compare.py sieve/testdata
Cases with options or include scripts are skipped (they need our fakes).
"""
import glob, os, pwd, re, subprocess, sys, tempfile

DEFAULT_MSG = """From: Sender <sender@example.org>
To: User <user@example.net>
Subject: Hello
Date: Tue, 1 Apr 2025 10:00:00 +0200
Message-ID: <m1@example.org>

Hello world.
"""

def read_cases(fn):
    cases, cur, sec = [], None, None
    for line in open(fn).read().split("\n"):
        if line.startswith("=== "):
            cur = {"name": line[4:], "sec": {}}
            cases.append(cur)
            sec = None
        elif line.startswith("--- ") and cur is not None:
            sec = line[4:].strip()
            cur["sec"][sec] = []
        elif cur is not None and sec:
            cur["sec"][sec].append(line)
    return cases

def pigeonhole_lines(out):
    lines = []
    for l in out.split("\n"):
        m = re.match(r"^ \* store message in folder: (.*)$", l)
        if m:
            lines.append('store "%s"' % m.group(1))
        elif l.startswith(" * discard"):
            lines.append("discard")
        elif l.startswith(" * redirect message to: "):
            lines.append("redirect " + l.split(": ", 1)[1])
        elif l.startswith(" * reject message"):
            lines.append("reject")
        elif l.startswith(" * send vacation"):
            lines.append("vacation")
        elif ": error:" in l or "Fatal:" in l:
            lines.append("ERROR " + l)
    return lines

def ours_lines(exp):
    out = []
    for l in exp:
        l = re.sub(r" edits \d+$", "", l)
        if l.startswith("fileinto"):
            out.append('store "%s"' % re.findall(r'"((?:[^"\\]|\\.)*)"$', l)[0])
        elif l.startswith("keep"):
            out.append('store "INBOX"')
        elif l.startswith("implicit keep"):
            out.append('store "INBOX"')
        elif l.startswith("redirect"):
            out.append("redirect <%s>" % re.findall(r'"(.*)"$', l)[0])
        elif l.startswith(("reject", "ereject")):
            out.append("reject")
        elif l.startswith(("discard", "vacation")):
            out.append(l.split()[0])
    return out

def main():
    tmp = tempfile.mkdtemp(prefix="pgh-")
    os.chmod(tmp, 0o755)
    home = os.path.join(tmp, "home")
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(home, "Maildir", d))
    nobody = pwd.getpwnam("nobody")
    for root, dirs, files in os.walk(tmp):
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
    conf = os.path.join(tmp, "dovecot.conf")
    open(conf, "w").write("""mail_uid = nobody
mail_gid = nogroup
mail_location = maildir:%s/Maildir
mail_home = %s
plugin {
  sieve_extensions = +editheader +vacation-seconds +spamtest +spamtestplus +virustest +foreverypart +mime +extracttext
}
""" % (home, home))
    script, msgf = os.path.join(tmp, "s.sieve"), os.path.join(tmp, "m.eml")
    for fn in sorted(glob.glob(os.path.join(sys.argv[1], "*.corpus"))):
        for c in read_cases(fn):
            s = c["sec"]
            if "options" in s or any(k.startswith("include") for k in s):
                continue
            open(script, "w").write("\n".join(s["script"]) + "\n")
            msg = "\n".join(s["message"]).rstrip("\n") + "\n" if "message" in s else DEFAULT_MSG
            open(msgf, "w").write(msg.replace("\n", "\r\n"))
            for f in (script, msgf):
                os.chmod(f, 0o644)
            env = {"from": "sender@example.org", "to": "user@example.net", "orig_to": ""}
            for l in s.get("envelope", []):
                if ":" in l:
                    k, v = l.split(":", 1)
                    env[k.strip()] = v.strip()
            if env["from"] == "":
                continue  # sieve-test has no null sender option
            args = ["sieve-test", "-c", conf, "-r", env["to"], "-f", env["from"]]
            if env["orig_to"]:
                args += ["-a", env["orig_to"]]
            p = subprocess.run(args + [script, msgf], capture_output=True, text=True,
                               env={"HOME": home, "PATH": os.environ["PATH"]})
            pig = pigeonhole_lines(p.stdout + p.stderr)
            if "error" in s or "runtime-error" in s:
                ours = ["ERROR"]
                same = any(l.startswith("ERROR") for l in pig)
            else:
                ours = ours_lines(s.get("expect", []))
                same = sorted(set(ours)) == sorted(set(pig))
            if not same:
                print("%s: %s\n  ours:       %s\n  pigeonhole: %s" % (os.path.basename(fn), c["name"], ours, pig))

if __name__ == "__main__":
    main()
