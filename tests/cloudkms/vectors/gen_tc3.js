// Golden TC3-HMAC-SHA256 vectors for lib/masterkey/tc3.c, computed by the official
// Tencent Cloud Node SDK signer (npm tencentcloud-sdk-nodejs-common, pinned in
// tests/cloudkms/package.json) with fixed timestamps. Regenerate with:
//   NODE_PATH=build/npm/node_modules node tests/cloudkms/vectors/gen_tc3.js > tests/cloudkms/vectors/tc3.txt
const Sign = require("tencentcloud-sdk-nodejs-common/tencentcloud/common/sign").default;
const version = require("tencentcloud-sdk-nodejs-common/package.json").version;

const cases = [
  // The README example: an object payload, serialized by the SDK itself.
  { time: 1704067200, url: "https://kms.tencentcloudapi.com/", id: "AKIDTEST", key: "testsecret",
    payload: { KeyId: "23e80852-1e38-11e9-b129-5cb9019b4b01", KeySpec: "AES_256", EncryptionContext: "{\"db\":\"pg1\"}" } },
  { time: 1767225599, url: "https://kms.ap-guangzhou.tencentcloudapi.com/", id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
    key: "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", ct: "application/json; charset=utf-8",
    body: "{\"CiphertextBlob\":\"AQID\",\"EncryptionContext\":\"{\\\"tde:aad\\\":\\\"a2V5\\\"}\"}" },
  { time: 1772281805, url: "https://127.0.0.1:9443/", id: "id2", key: "k/+=", body: "" },
  { time: 1900000000, url: "https://localhost/", id: "id3", key: "s", body: "{\"Plaintext\":\"caf\u00e9 \u4e2d\"}" },
];

console.log(`# TC3 golden vectors computed by tencentcloud-sdk-nodejs-common ${version} (tests/cloudkms/vectors/gen_tc3.js).`);
for (const c of cases) {
  const ct = c.ct || "application/json";
  const payload = c.payload !== undefined ? c.payload : Buffer.from(c.body, "utf8");
  const body = c.payload !== undefined ? JSON.stringify(c.payload) : c.body;
  const auth = Sign.sign3({ method: "POST", url: c.url, payload, timestamp: c.time, service: "kms",
    secretId: c.id, secretKey: c.key, multipart: false, boundary: "", headers: { "Content-Type": ct } });
  console.log("");
  console.log(`time=${c.time}`);
  console.log(`host=${new URL(c.url).hostname}`);
  console.log(`content_type=${ct}`);
  console.log(`secret_id=${c.id}`);
  console.log(`secret_key=${c.key}`);
  console.log(`body=${body}`);
  console.log(`authorization=${auth}`);
}
