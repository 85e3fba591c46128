#!/usr/bin/python3
"""A local AWS KMS for libtde's tests (JSON 1.1 protocol over HTTPS on 127.0.0.1).

Every request's SigV4 signature is checked by botocore (an independent
implementation): the request is rebuilt from the headers the client signed and
signed again with botocore's clock pinned to X-Amz-Date. GenerateDataKey,
Encrypt and Decrypt use real AES-256-GCM with the EncryptionContext as AAD.
It also serves IMDSv2 credential paths (/latest/...) for the instance-role chain
and STS AssumeRoleWithWebIdentity (form POST) for the web-identity chain.

Faults come from the JSON file --fault-file, read on every request:
  {"mode": M, "count": N, "seconds": S}   (count: requests to affect; -1 = all)
  M = 500 | 503 | throttle | slow (sleep S, then answer) | malformed | badsig |
      skew (server clock off by S seconds) | otherkey (Decrypt answers another
      key's plaintext) | drop (close without answering)
Each answered KMS request appends "Op status" to DIR/requests.log.
The server exits by itself after --lifetime seconds (bounded life); tests stop
it earlier with SIGTERM to its pid.
"""
import argparse, base64, datetime, json, os, signal, ssl, sys, threading, time, urllib.parse, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ACCOUNT = "111122223333"
SKEW_LIMIT = 300
args = None
keys = {}      # key id -> 32-byte AES key
aliases = {}   # "alias/x" -> key id
creds = {}     # access key -> (secret, token or None)
lock = threading.Lock()


class KmsError(Exception):
    def __init__(self, status, kind, message):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def take_fault():
    """Returns the active fault (dict) and consumes one use of it, or None."""
    with lock:
        try:
            with open(args.fault_file) as f:
                fault = json.load(f)
        except (OSError, ValueError):
            return None
        count = fault.get("count", -1)
        if count == 0:
            return None
        if count > 0:
            fault["count"] = count - 1
            with open(args.fault_file + ".tmp", "w") as f:
                json.dump(fault, f)
            os.replace(args.fault_file + ".tmp", args.fault_file)
        return fault


def log_request(op, status):
    with lock, open(os.path.join(args.dir, "requests.log"), "a") as f:
        f.write(f"{op} {status}\n")


def verify_signature(handler, body, skew):
    auth = handler.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        raise KmsError(400, "MissingAuthenticationTokenException", "Request is missing Authentication Token")
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    ak, day, region, service, term = parts["Credential"].split("/")
    signed = parts["SignedHeaders"].split(";")
    for need in ("content-type", "host", "x-amz-date", "x-amz-target"):
        if need not in signed:
            raise KmsError(400, "InvalidSignatureException", f"{need} must be signed")
    if ak not in creds:
        raise KmsError(400, "UnrecognizedClientException", "The security token included in the request is invalid.")
    secret, token = creds[ak]
    if token is not None and handler.headers.get("X-Amz-Security-Token") != token:
        raise KmsError(400, "UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = handler.headers.get("X-Amz-Date", "")
    when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    now = datetime.datetime.utcnow() + datetime.timedelta(seconds=skew)
    if abs((now - when).total_seconds()) > SKEW_LIMIT:
        raise KmsError(400, "InvalidSignatureException",
                       f"Signature expired: {amz_date} is now earlier than "
                       f"{(now - datetime.timedelta(seconds=SKEW_LIMIT)).strftime('%Y%m%dT%H%M%SZ')}")
    headers = {h: handler.headers[h] for h in signed
               if h not in ("host", "x-amz-date", "x-amz-security-token") and h in handler.headers}
    req = AWSRequest(method=handler.command, url=f"https://{handler.headers['Host']}{handler.path}",
                     data=body, headers=headers)
    with mock.patch("botocore.auth.datetime") as d:
        d.datetime.utcnow.return_value = when
        SigV4Auth(Credentials(ak, secret, token), service, region).add_auth(req)
    if req.headers["Authorization"] != auth:
        raise KmsError(400, "InvalidSignatureException",
                       "The request signature we calculated does not match the signature you provided.")
    return region


def resolve(key_id):
    if key_id is None:
        raise KmsError(400, "ValidationException", "KeyId is required")
    name = key_id.split(":", 5)[5] if key_id.startswith("arn:") else key_id
    if name.startswith("key/"):
        name = name[4:]
    if name.startswith("alias/"):
        if name not in aliases:
            raise KmsError(400, "NotFoundException", f"Alias {key_id} is not found.")
        name = aliases[name]
    if name not in keys:
        raise KmsError(400, "NotFoundException", f"Key '{key_id}' does not exist")
    return name


def context_aad(ctx):
    if ctx is None:
        return b""
    if not isinstance(ctx, dict) or not all(isinstance(v, str) for v in ctx.values()):
        raise KmsError(400, "ValidationException", "EncryptionContext must map strings to strings")
    return json.dumps(ctx, sort_keys=True, separators=(",", ":")).encode()


def seal(kid, pt, ctx):
    iv = os.urandom(12)
    k = kid.encode()
    return bytes([len(k)]) + k + iv + AESGCM(keys[kid]).encrypt(iv, pt, context_aad(ctx))


def arn(region, kid):
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{kid}"


def b64decode(v, what):
    try:
        return base64.b64decode(v, validate=True)
    except (ValueError, TypeError):
        raise KmsError(400, "SerializationException", f"{what} is not valid base64")


def operate(op, req, region, fault):
    if op == "GenerateDataKey":
        kid = resolve(req.get("KeyId"))
        n = req.get("NumberOfBytes") or {"AES_256": 32, "AES_128": 16}.get(req.get("KeySpec"))
        if not isinstance(n, int) or not 1 <= n <= 1024:
            raise KmsError(400, "ValidationException", "KeySpec or NumberOfBytes (1..1024) is required")
        pt = os.urandom(n)
        return {"KeyId": arn(region, kid), "Plaintext": base64.b64encode(pt).decode(),
                "CiphertextBlob": base64.b64encode(seal(kid, pt, req.get("EncryptionContext"))).decode()}
    if op == "Encrypt":
        kid = resolve(req.get("KeyId"))
        pt = b64decode(req.get("Plaintext", ""), "Plaintext")
        if not 1 <= len(pt) <= 4096:
            raise KmsError(400, "ValidationException", "Plaintext must be 1..4096 bytes")
        return {"KeyId": arn(region, kid), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "CiphertextBlob": base64.b64encode(seal(kid, pt, req.get("EncryptionContext"))).decode()}
    if op == "Decrypt":
        blob = b64decode(req.get("CiphertextBlob", ""), "CiphertextBlob")
        n = blob[0] if blob else 0
        kid = blob[1:1 + n].decode(errors="replace")
        if len(blob) < 1 + n + 12 + 16 or kid not in keys:
            raise KmsError(400, "InvalidCiphertextException", "")
        if req.get("KeyId") is not None and resolve(req["KeyId"]) != kid:
            raise KmsError(400, "IncorrectKeyException",
                           "The key ID in the request does not identify a CMK that can perform this operation.")
        if fault and fault.get("mode") == "otherkey":
            other = str(uuid.uuid4())
            return {"KeyId": arn(region, other), "Plaintext": base64.b64encode(os.urandom(32)).decode(),
                    "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
        try:
            pt = AESGCM(keys[kid]).decrypt(blob[1 + n:13 + n], blob[13 + n:],
                                           context_aad(req.get("EncryptionContext")))
        except Exception:
            raise KmsError(400, "InvalidCiphertextException", "")
        return {"KeyId": arn(region, kid), "Plaintext": base64.b64encode(pt).decode(),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    raise KmsError(400, "UnknownOperationException", "")


imds_tokens = set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def reply(self, status, body, ctype="application/x-amz-json-1.1"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        # IMDSv2 session token
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            token = base64.b64encode(os.urandom(24)).decode()
            imds_tokens.add(token)
            return self.reply(200, token.encode(), "text/plain")
        self.reply(403, b"", "text/plain")

    def do_GET(self):
        base = "/latest/meta-data/iam/security-credentials/"
        if self.headers.get("X-aws-ec2-metadata-token") not in imds_tokens:
            return self.reply(401, b"", "text/plain")
        if self.path == base:
            return self.reply(200, b"tde-role", "text/plain")
        if self.path == base + "tde-role":
            ak = "ASIAIMDS" + uuid.uuid4().hex[:12].upper()
            secret, token = base64.b64encode(os.urandom(30)).decode(), base64.b64encode(os.urandom(60)).decode()
            creds[ak] = (secret, token)
            exp = datetime.datetime.utcnow() + datetime.timedelta(seconds=args.imds_ttl)
            log_request("IMDS", 200)
            return self.reply(200, {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": ak,
                                    "SecretAccessKey": secret, "Token": token,
                                    "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}, "text/plain")
        self.reply(404, b"", "text/plain")

    def sts(self, body):
        form = urllib.parse.parse_qs(body.decode())
        one = lambda k: form.get(k, [""])[0]
        if (one("Action") != "AssumeRoleWithWebIdentity" or not args.web_identity_token
                or one("WebIdentityToken") != args.web_identity_token or not one("RoleArn")):
            log_request("AssumeRoleWithWebIdentity", 403)
            return self.reply(403, b"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>",
                              "text/xml")
        ak = "ASIASTS" + uuid.uuid4().hex[:12].upper()
        secret, token = base64.b64encode(os.urandom(30)).decode(), base64.b64encode(os.urandom(60)).decode()
        creds[ak] = (secret, token)
        exp = (datetime.datetime.utcnow() + datetime.timedelta(seconds=args.imds_ttl)).strftime("%Y-%m-%dT%H:%M:%SZ")
        log_request("AssumeRoleWithWebIdentity", 200)
        xml = (f"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
               f"<AccessKeyId>{ak}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
               f"<SessionToken>{token}</SessionToken><Expiration>{exp}</Expiration>"
               f"</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>")
        self.reply(200, xml.encode(), "text/xml")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return self.sts(body)
        op = self.headers.get("X-Amz-Target", "").removeprefix("TrentService.")
        fault = take_fault()
        mode = fault.get("mode") if fault else None
        if mode == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode == "slow":
            time.sleep(min(float(fault.get("seconds", 2)), 30))
        status = 200
        try:
            if mode in ("500", "503"):
                raise KmsError(int(mode), "KMSInternalException" if mode == "500" else "ServiceUnavailableException",
                               "injected fault")
            if mode == "throttle":
                raise KmsError(400, "ThrottlingException", "Rate exceeded")
            region = verify_signature(self, body, fault.get("seconds", 0) if mode == "skew" else 0)
            if mode == "badsig":
                raise KmsError(400, "InvalidSignatureException",
                               "The request signature we calculated does not match the signature you provided.")
            if mode == "malformed":
                log_request(op, 200)
                return self.reply(200, b'{"KeyId": "arn:aws:kms:x", "Plaintext": ')
            try:
                req = json.loads(body)
            except ValueError:
                raise KmsError(400, "SerializationException", "body is not JSON")
            out = operate(op, req, region, fault)
        except KmsError as e:
            status, out = e.status, {"__type": e.kind, "message": e.message}
        log_request(op, status)
        self.reply(status, out)


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--cert-dir", required=True)
    p.add_argument("--key", action="append", default=[], help="key id (state kept in DIR/keys.json)")
    p.add_argument("--alias", action="append", default=[], help="alias/NAME=KEYID")
    p.add_argument("--cred", action="append", default=[], help="ACCESS:SECRET[:TOKEN]")
    p.add_argument("--fault-file")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--imds-ttl", type=int, default=3600, help="lifetime of IMDS and STS credentials")
    p.add_argument("--web-identity-token")
    p.add_argument("--lifetime", type=float, default=600)
    args = p.parse_args()
    args.fault_file = args.fault_file or os.path.join(args.dir, "fault.json")
    state = os.path.join(args.dir, "keys.json")
    if os.path.exists(state):
        with open(state) as f:
            keys.update({k: bytes.fromhex(v) for k, v in json.load(f).items()})
    for k in args.key:
        keys.setdefault(k, os.urandom(32))
    with open(state + ".tmp", "w") as f:
        json.dump({k: v.hex() for k, v in keys.items()}, f)
    os.replace(state + ".tmp", state)
    for a in args.alias:
        name, kid = a.split("=", 1)
        aliases[name] = kid
    for c in args.cred:
        ak, secret, *token = c.split(":", 2)
        creds[ak] = (secret, token[0] if token else None)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(args.cert_dir, "server.pem"), os.path.join(args.cert_dir, "server.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(os.path.join(args.dir, "port.tmp"), "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(os.path.join(args.dir, "port.tmp"), os.path.join(args.dir, "port"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    time.sleep(args.lifetime)


if __name__ == "__main__":
    main()
