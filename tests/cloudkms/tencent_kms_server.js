// A local Tencent Cloud KMS for libtde's tests (API 3.0 over HTTPS on 127.0.0.1).
//
// Every request's TC3-HMAC-SHA256 signature is recomputed by the official
// Tencent Cloud Node SDK signer (npm tencentcloud-sdk-nodejs-common, an
// independent implementation; found through NODE_PATH) and compared.
// GenerateDataKey, Encrypt and Decrypt use real AES-256-GCM with the
// EncryptionContext string as AAD. Errors come with HTTP 200 in
// Response.Error, as the real service does. It also serves the CVM metadata
// paths for role credentials (/latest/meta-data/cam/security-credentials/).
//
// Usage: node tencent_kms_server.js --dir D --cert-dir C [--key ID]... [--cred ID:KEY[:TOKEN]]...
//        [--fault-file F] [--lifetime S] [--role-ttl S] [--any-service 1]
// Faults (JSON file read on every request): {"mode": M, "count": N, "seconds": S}, M =
//   502 | internal | throttle | slow | malformed | badsig | skew | otherkey | drop.
// Each KMS request appends "Action code" to D/requests.log. The server exits by
// itself after --lifetime seconds; tests stop it with SIGTERM to its pid.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const https = require("https");
const path = require("path");
const Sign = require("tencentcloud-sdk-nodejs-common/tencentcloud/common/sign").default;

const SKEW_LIMIT = 300;
const opts = { key: [], cred: [], lifetime: 600, "role-ttl": 7200 };
for (let i = 2; i < process.argv.length; i += 2) {
  const name = process.argv[i].replace(/^--/, ""), value = process.argv[i + 1];
  if (Array.isArray(opts[name])) opts[name].push(value); else opts[name] = value;
}
const faultFile = opts["fault-file"] || path.join(opts.dir, "fault.json");
const stateFile = path.join(opts.dir, "keys.json");
const keys = fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile)) : {};
for (const k of opts.key) if (!keys[k]) keys[k] = crypto.randomBytes(32).toString("hex");
fs.writeFileSync(stateFile + ".tmp", JSON.stringify(keys));
fs.renameSync(stateFile + ".tmp", stateFile);
const creds = {};
for (const c of opts.cred) {
  const [id, key, token] = c.split(":");
  creds[id] = { key, token };
}

class TcError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

function takeFault() {
  let fault;
  try { fault = JSON.parse(fs.readFileSync(faultFile)); } catch (e) { return null; }
  const count = fault.count === undefined ? -1 : fault.count;
  if (count === 0) return null;
  if (count > 0) {
    fault.count = count - 1;
    fs.writeFileSync(faultFile + ".tmp", JSON.stringify(fault));
    fs.renameSync(faultFile + ".tmp", faultFile);
  }
  return fault;
}

function logRequest(action, code) {
  fs.appendFileSync(path.join(opts.dir, "requests.log"), `${action} ${code}\n`);
}

function verify(req, body, skew) {
  const auth = req.headers["authorization"] || "";
  const m = /^TC3-HMAC-SHA256 Credential=([^/]*)\/([0-9-]+)\/([^/]+)\/tc3_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) throw new TcError("AuthFailure.InvalidAuthorization", "Authorization header is malformed");
  const [, id, , service] = m;
  // The SDK takes the service from the endpoint's first label ("127" for 127.0.0.1).
  if (service !== "kms" && !opts["any-service"]) throw new TcError("AuthFailure.SignatureFailure", `service ${service} is not kms`);
  if (!creds[id]) throw new TcError("AuthFailure.SecretIdNotFound", "The SecretId is not found");
  if (creds[id].token !== undefined && req.headers["x-tc-token"] !== creds[id].token)
    throw new TcError("AuthFailure.TokenFailure", "Token verification failed");
  const ts = Number(req.headers["x-tc-timestamp"]);
  const now = Math.floor(Date.now() / 1000) + skew;
  if (!Number.isInteger(ts) || Math.abs(now - ts) > SKEW_LIMIT)
    throw new TcError("AuthFailure.SignatureExpire", `Signature expired, timestamp ${ts} vs server time ${now}`);
  const host = (req.headers["host"] || "").replace(/:\d+$/, "");
  const expected = Sign.sign3({ method: req.method, url: `https://${host}${req.url}`, payload: body,
    timestamp: ts, service, secretId: id, secretKey: creds[id].key, multipart: false, boundary: "",
    headers: { "Content-Type": req.headers["content-type"] } });
  if (expected !== auth) throw new TcError("AuthFailure.SignatureFailure", "The provided credentials could not be validated");
}

function b64(v, what) {
  if (typeof v !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4)
    throw new TcError("InvalidParameterValue", `${what} is not valid base64`);
  return Buffer.from(v, "base64");
}

function context(req) {
  const c = req.EncryptionContext;
  if (c === undefined || c === "") return Buffer.alloc(0);
  if (typeof c !== "string") throw new TcError("InvalidParameterValue", "EncryptionContext must be a JSON string");
  try { JSON.parse(c); } catch (e) { throw new TcError("InvalidParameterValue", "EncryptionContext is not JSON"); }
  return Buffer.from(c);
}

function seal(kid, pt, aad) {
  const iv = crypto.randomBytes(12), k = Buffer.from(kid);
  const c = crypto.createCipheriv("aes-256-gcm", Buffer.from(keys[kid], "hex"), iv);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
  return Buffer.concat([Buffer.from([k.length]), k, iv, ct]).toString("base64");
}

function keyOf(req) {
  if (typeof req.KeyId !== "string") throw new TcError("MissingParameter", "KeyId is required");
  if (!keys[req.KeyId]) throw new TcError("ResourceUnavailable.CmkNotFound", `CMK ${req.KeyId} not found`);
  return req.KeyId;
}

function operate(action, req, fault) {
  if (action === "GenerateDataKey") {
    const kid = keyOf(req);
    const n = req.NumberOfBytes || { AES_256: 32, AES_128: 16 }[req.KeySpec];
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new TcError("InvalidParameterValue", "KeySpec or NumberOfBytes required");
    const pt = crypto.randomBytes(n);
    return { KeyId: kid, Plaintext: pt.toString("base64"), CiphertextBlob: seal(kid, pt, context(req)) };
  }
  if (action === "Encrypt") {
    const kid = keyOf(req), pt = b64(req.Plaintext, "Plaintext");
    if (pt.length < 1 || pt.length > 4096) throw new TcError("InvalidParameterValue", "Plaintext must be 1..4096 bytes");
    return { KeyId: kid, CiphertextBlob: seal(kid, pt, context(req)) };
  }
  if (action === "Decrypt") {
    const blob = b64(req.CiphertextBlob, "CiphertextBlob");
    const n = blob.length ? blob[0] : 0, kid = blob.subarray(1, 1 + n).toString();
    if (blob.length < 1 + n + 12 + 16 || !keys[kid]) throw new TcError("InvalidParameterValue.InvalidCiphertext", "invalid ciphertext");
    if (fault && fault.mode === "otherkey")
      return { KeyId: crypto.randomUUID(), Plaintext: crypto.randomBytes(32).toString("base64") };
    try {
      const d = crypto.createDecipheriv("aes-256-gcm", Buffer.from(keys[kid], "hex"), blob.subarray(1 + n, 13 + n));
      d.setAAD(context(req));
      d.setAuthTag(blob.subarray(blob.length - 16));
      const pt = Buffer.concat([d.update(blob.subarray(13 + n, blob.length - 16)), d.final()]);
      return { KeyId: kid, Plaintext: pt.toString("base64") };
    } catch (e) {
      if (e instanceof TcError) throw e;
      throw new TcError("InvalidParameterValue.InvalidCiphertext", "invalid ciphertext");
    }
  }
  throw new TcError("InvalidAction", `unknown action ${action}`);
}

function send(res, status, body, type) {
  const data = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
  res.writeHead(status, { "Content-Type": type || "application/json", "Content-Length": data.length });
  res.end(data);
}

function metadata(req, res) {
  const base = "/latest/meta-data/cam/security-credentials/";
  if (req.url === base) return send(res, 200, "tde-role", "text/plain");
  if (req.url !== base + "tde-role") return send(res, 404, "", "text/plain");
  const id = "AKIDCVM" + crypto.randomBytes(6).toString("hex"), key = crypto.randomBytes(24).toString("base64");
  const token = crypto.randomBytes(40).toString("hex");
  creds[id] = { key, token };
  logRequest("Metadata", "Success");
  const exp = Math.floor(Date.now() / 1000) + Number(opts["role-ttl"]);
  send(res, 200, { TmpSecretId: id, TmpSecretKey: key, Token: token, ExpiredTime: exp,
    Expiration: new Date(exp * 1000).toISOString().replace(/\.\d+Z$/, "Z"), Code: "Success" });
}

function handle(req, res, body) {
  if (req.method === "GET") return metadata(req, res);
  const action = req.headers["x-tc-action"] || "";
  const requestId = crypto.randomUUID();
  const fault = takeFault();
  const mode = fault ? fault.mode : null;
  if (mode === "drop") return req.socket.destroy();
  const answer = () => {
    let out;
    try {
      if (mode === "502") {
        logRequest(action, "502");
        return send(res, 502, "<html><body>502 Bad Gateway</body></html>", "text/html");
      }
      if (mode === "throttle") throw new TcError("RequestLimitExceeded", "request limit exceeded");
      if (mode === "internal") throw new TcError("InternalError", "injected internal error");
      for (const h of ["x-tc-action", "x-tc-version", "x-tc-region", "x-tc-timestamp"])
        if (!req.headers[h]) throw new TcError("MissingParameter", `${h} is required`);
      verify(req, body, mode === "skew" ? Number(fault.seconds || 0) : 0);
      if (mode === "badsig") throw new TcError("AuthFailure.SignatureFailure", "The provided credentials could not be validated");
      if (mode === "malformed") {
        logRequest(action, "malformed");
        return send(res, 200, '{"Response": {"KeyId": "x", "Plaintext": ');
      }
      let params;
      try { params = JSON.parse(body.toString()); } catch (e) { throw new TcError("InvalidParameter", "body is not JSON"); }
      out = operate(action, params, fault);
      logRequest(action, "Success");
    } catch (e) {
      if (!(e instanceof TcError)) throw e;
      logRequest(action, e.code);
      out = { Error: { Code: e.code, Message: e.message } };
    }
    out.RequestId = requestId;
    send(res, 200, { Response: out });
  };
  if (mode === "slow") setTimeout(answer, Math.min(Number(fault.seconds || 2), 30) * 1000);
  else answer();
}

const server = https.createServer({
  key: fs.readFileSync(path.join(opts["cert-dir"], "server.key")),
  cert: fs.readFileSync(path.join(opts["cert-dir"], "server.pem")),
}, (req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => handle(req, res, Buffer.concat(chunks)));
});
server.listen(Number(opts.port || 0), "127.0.0.1", () => {
  fs.writeFileSync(path.join(opts.dir, "port.tmp"), String(server.address().port));
  fs.renameSync(path.join(opts.dir, "port.tmp"), path.join(opts.dir, "port"));
});
process.on("SIGTERM", () => process.exit(0));
setTimeout(() => process.exit(0), Number(opts.lifetime) * 1000);
