// Proves the local Tencent Cloud KMS (tencent_kms_server.js) is faithful: the
// official Node SDK's CommonClient, an independent client, calls it and gets
// data keys it can decrypt, EncryptionContext enforced, and errors it parses.
// Usage: NODE_PATH=... NODE_EXTRA_CA_CERTS=ca.pem node tc3_sdk_check.js PORT KEYID
"use strict";
const { CommonClient } = require("tencentcloud-sdk-nodejs-common");
const [port, keyId] = process.argv.slice(2);

function client(secretKey) {
  return new CommonClient(`127.0.0.1:${port}`, "2019-01-18", {
    credential: { secretId: "AKIDTEST", secretKey }, region: "ap-guangzhou",
    profile: { httpProfile: { reqTimeout: 10 } } });
}
function check(cond, what) { if (!cond) { console.error(`FAIL: ${what}`); process.exit(1); } }
async function fails(promise, code) {
  try { await promise; } catch (e) { return e.code === code || String(e).includes(code); }
  return false;
}

(async () => {
  const c = client("testsecret");
  const ctx = JSON.stringify({ app: "tde" });
  const gen = await c.request("GenerateDataKey", { KeyId: keyId, KeySpec: "AES_256", EncryptionContext: ctx });
  check(gen.KeyId === keyId && Buffer.from(gen.Plaintext, "base64").length === 32, "GenerateDataKey");
  const dec = await c.request("Decrypt", { CiphertextBlob: gen.CiphertextBlob, EncryptionContext: ctx });
  check(dec.Plaintext === gen.Plaintext, "Decrypt returns the data key");
  check(await fails(c.request("Decrypt", { CiphertextBlob: gen.CiphertextBlob, EncryptionContext: "{\"app\":\"x\"}" }),
    "InvalidParameterValue.InvalidCiphertext"), "wrong EncryptionContext refused");
  const enc = await c.request("Encrypt", { KeyId: keyId, Plaintext: Buffer.from("small secret").toString("base64") });
  const back = await c.request("Decrypt", { CiphertextBlob: enc.CiphertextBlob });
  check(Buffer.from(back.Plaintext, "base64").toString() === "small secret", "Encrypt/Decrypt round trip");
  check(await fails(c.request("Encrypt", { KeyId: "no-such-key", Plaintext: "AA==" }), "ResourceUnavailable.CmkNotFound"),
    "unknown key refused");
  check(await fails(client("wrong").request("Encrypt", { KeyId: keyId, Plaintext: "AA==" }), "AuthFailure.SignatureFailure"),
    "wrong secret refused");
  console.log("tencent sdk: all checks passed");
})().catch((e) => { console.error("FAIL:", e); process.exit(1); });
