/* KMIP 1.x and 2.0 request encoding and response decoding (see kmip_msg.h). */
#include "masterkey/kmip_msg.h"

#include <string.h>

#include "common/error.h"

/* Tags (KMIP 1.4 section 9.1.3.1; 0x420125 and 0x42013B from KMIP 2.0). */
enum {
    T_ATTRIBUTE = 0x420008,
    T_ATTRIBUTE_NAME = 0x42000A,
    T_ATTRIBUTE_VALUE = 0x42000B,
    T_BATCH_COUNT = 0x42000D,
    T_BATCH_ITEM = 0x42000F,
    T_BLOCK_CIPHER_MODE = 0x420011,
    T_CRYPTO_ALGORITHM = 0x420028,
    T_CRYPTO_LENGTH = 0x42002A,
    T_CRYPTO_PARAMETERS = 0x42002B,
    T_CRYPTO_USAGE_MASK = 0x42002C,
    T_IV_COUNTER_NONCE = 0x42003D,
    T_KEY_BLOCK = 0x420040,
    T_KEY_FORMAT_TYPE = 0x420042,
    T_KEY_MATERIAL = 0x420043,
    T_KEY_VALUE = 0x420045,
    T_NAME = 0x420053,
    T_NAME_TYPE = 0x420054,
    T_NAME_VALUE = 0x420055,
    T_OBJECT_TYPE = 0x420057,
    T_OPERATION = 0x42005C,
    T_PROTOCOL_VERSION = 0x420069,
    T_VERSION_MAJOR = 0x42006A,
    T_VERSION_MINOR = 0x42006B,
    T_QUERY_FUNCTION = 0x420074,
    T_REQUEST_HEADER = 0x420077,
    T_REQUEST_MESSAGE = 0x420078,
    T_REQUEST_PAYLOAD = 0x420079,
    T_RESPONSE_HEADER = 0x42007A,
    T_RESPONSE_MESSAGE = 0x42007B,
    T_RESPONSE_PAYLOAD = 0x42007C,
    T_RESULT_MESSAGE = 0x42007D,
    T_RESULT_REASON = 0x42007E,
    T_RESULT_STATUS = 0x42007F,
    T_REVOCATION_REASON = 0x420081,
    T_REVOCATION_REASON_CODE = 0x420082,
    T_SYMMETRIC_KEY = 0x42008F,
    T_UNIQUE_IDENTIFIER = 0x420094,
    T_DATA = 0x4200C2,
    T_TAG_LENGTH = 0x4200CE,
    T_AE_ADDITIONAL_DATA = 0x4200FE,
    T_AE_TAG = 0x4200FF,
    T_ATTRIBUTES = 0x420125,
};

/* Enumeration values. */
enum {
    OBJECT_SYMMETRIC_KEY = 2,
    ALGORITHM_AES = 3,
    NAME_UNINTERPRETED_TEXT = 1,
    KEY_FORMAT_RAW = 1,
    KEY_FORMAT_TRANSPARENT_SYMMETRIC = 7,
    MODE_GCM = 9,
    QUERY_OPERATIONS = 1,
};

int
kmip_version_cmp(kmip_version a, kmip_version b)
{
    if (a.major != b.major)
        return a.major < b.major ? -1 : 1;
    return a.minor < b.minor ? -1 : a.minor > b.minor;
}

static int
is_v2(kmip_version v)
{
    return v.major >= 2;
}

static void
enc_cstr(kmip_enc *e, uint32_t tag, const char *s)
{
    kmip_enc_text(e, tag, s, strlen(s));
}

static void
enc_name(kmip_enc *e, const char *name)
{
    enc_cstr(e, T_NAME_VALUE, name);
    kmip_enc_enum(e, T_NAME_TYPE, NAME_UNINTERPRETED_TEXT);
}

/* 1.x: Attribute { Attribute Name, Attribute Value } -- begins the value for the caller. */
static void
attr_begin(kmip_enc *e, const char *attr_name)
{
    kmip_enc_begin(e, T_ATTRIBUTE);
    enc_cstr(e, T_ATTRIBUTE_NAME, attr_name);
}

/* The key attributes of Create/Register: in a TemplateAttribute (1.x) or Attributes (2.0). */
static void
enc_key_attributes(kmip_enc *e, kmip_version v, const kmip_request *rq, int with_algorithm)
{
    if (is_v2(v)) {
        kmip_enc_begin(e, T_ATTRIBUTES);
        if (with_algorithm) {
            kmip_enc_enum(e, T_CRYPTO_ALGORITHM, ALGORITHM_AES);
            kmip_enc_int(e, T_CRYPTO_LENGTH, 256);
        }
        kmip_enc_int(e, T_CRYPTO_USAGE_MASK, (int32_t)rq->usage);
        kmip_enc_begin(e, T_NAME);
        enc_name(e, rq->name);
        kmip_enc_end(e);
        kmip_enc_end(e);
        return;
    }
    kmip_enc_begin(e, 0x420091 /* Template-Attribute */);
    if (with_algorithm) {
        attr_begin(e, "Cryptographic Algorithm");
        kmip_enc_enum(e, T_ATTRIBUTE_VALUE, ALGORITHM_AES);
        kmip_enc_end(e);
        attr_begin(e, "Cryptographic Length");
        kmip_enc_int(e, T_ATTRIBUTE_VALUE, 256);
        kmip_enc_end(e);
    }
    attr_begin(e, "Cryptographic Usage Mask");
    kmip_enc_int(e, T_ATTRIBUTE_VALUE, (int32_t)rq->usage);
    kmip_enc_end(e);
    attr_begin(e, "Name");
    kmip_enc_begin(e, T_ATTRIBUTE_VALUE);
    enc_name(e, rq->name);
    kmip_enc_end(e);
    kmip_enc_end(e);
    kmip_enc_end(e);
}

static void
enc_payload(kmip_enc *e, kmip_version v, const kmip_request *rq)
{
    switch (rq->op) {
    case KMIP_OP_CREATE:
        kmip_enc_enum(e, T_OBJECT_TYPE, OBJECT_SYMMETRIC_KEY);
        enc_key_attributes(e, v, rq, 1);
        break;
    case KMIP_OP_REGISTER:
        kmip_enc_enum(e, T_OBJECT_TYPE, OBJECT_SYMMETRIC_KEY);
        enc_key_attributes(e, v, rq, 0);
        kmip_enc_begin(e, T_SYMMETRIC_KEY);
        kmip_enc_begin(e, T_KEY_BLOCK);
        kmip_enc_enum(e, T_KEY_FORMAT_TYPE, KEY_FORMAT_RAW);
        kmip_enc_begin(e, T_KEY_VALUE);
        kmip_enc_bytes(e, T_KEY_MATERIAL, rq->key, KMIP_AES256_KEY_LEN);
        kmip_enc_end(e);
        kmip_enc_enum(e, T_CRYPTO_ALGORITHM, ALGORITHM_AES);
        kmip_enc_int(e, T_CRYPTO_LENGTH, 256);
        kmip_enc_end(e);
        kmip_enc_end(e);
        break;
    case KMIP_OP_LOCATE:
        if (is_v2(v)) {
            kmip_enc_begin(e, T_ATTRIBUTES);
            kmip_enc_begin(e, T_NAME);
            enc_name(e, rq->name);
            kmip_enc_end(e);
            kmip_enc_end(e);
        } else {
            attr_begin(e, "Name");
            kmip_enc_begin(e, T_ATTRIBUTE_VALUE);
            enc_name(e, rq->name);
            kmip_enc_end(e);
            kmip_enc_end(e);
        }
        break;
    case KMIP_OP_GET:
    case KMIP_OP_ACTIVATE:
    case KMIP_OP_DESTROY: enc_cstr(e, T_UNIQUE_IDENTIFIER, rq->uid); break;
    case KMIP_OP_REVOKE:
        enc_cstr(e, T_UNIQUE_IDENTIFIER, rq->uid);
        kmip_enc_begin(e, T_REVOCATION_REASON);
        kmip_enc_enum(e, T_REVOCATION_REASON_CODE, rq->revocation_reason);
        kmip_enc_end(e);
        break;
    case KMIP_OP_QUERY: kmip_enc_enum(e, T_QUERY_FUNCTION, QUERY_OPERATIONS); break;
    case KMIP_OP_DISCOVER_VERSIONS:
        for (size_t i = 0; i < rq->n_versions; i++) {
            kmip_enc_begin(e, T_PROTOCOL_VERSION);
            kmip_enc_int(e, T_VERSION_MAJOR, rq->versions[i].major);
            kmip_enc_int(e, T_VERSION_MINOR, rq->versions[i].minor);
            kmip_enc_end(e);
        }
        break;
    case KMIP_OP_ENCRYPT:
    case KMIP_OP_DECRYPT:
        enc_cstr(e, T_UNIQUE_IDENTIFIER, rq->uid);
        kmip_enc_begin(e, T_CRYPTO_PARAMETERS);
        kmip_enc_enum(e, T_BLOCK_CIPHER_MODE, MODE_GCM);
        kmip_enc_enum(e, T_CRYPTO_ALGORITHM, ALGORITHM_AES);
        kmip_enc_int(e, T_TAG_LENGTH, (int32_t)(rq->op == KMIP_OP_ENCRYPT ? 16 : rq->tag_len));
        kmip_enc_end(e);
        kmip_enc_bytes(e, T_DATA, rq->data, rq->data_len);
        kmip_enc_bytes(e, T_IV_COUNTER_NONCE, rq->iv, rq->iv_len);
        kmip_enc_bytes(e, T_AE_ADDITIONAL_DATA, rq->aad, rq->aad_len);
        if (rq->op == KMIP_OP_DECRYPT)
            kmip_enc_bytes(e, T_AE_TAG, rq->tag, rq->tag_len);
        break;
    default:
        if (e->err == TDE_OK)
            e->err = tde_error_set(TDE_ERR_INTERNAL, "kmip: no encoder for operation %u", rq->op);
    }
}

tde_status
kmip_request_encode(kmip_version v, const kmip_request *rq, uint8_t **out, size_t *len)
{
    kmip_enc e;

    if ((rq->op == KMIP_OP_CREATE || rq->op == KMIP_OP_REGISTER || rq->op == KMIP_OP_LOCATE) &&
        rq->name == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "kmip: %s needs a key name", kmip_op_str(rq->op));
    if ((rq->op == KMIP_OP_GET || rq->op == KMIP_OP_ACTIVATE || rq->op == KMIP_OP_DESTROY ||
         rq->op == KMIP_OP_REVOKE || rq->op == KMIP_OP_ENCRYPT || rq->op == KMIP_OP_DECRYPT) &&
        rq->uid == NULL)
        return tde_error_set(TDE_ERR_INVALID_ARG, "kmip: %s needs a unique identifier",
                             kmip_op_str(rq->op));
    kmip_enc_init(&e);
    kmip_enc_begin(&e, T_REQUEST_MESSAGE);
    kmip_enc_begin(&e, T_REQUEST_HEADER);
    kmip_enc_begin(&e, T_PROTOCOL_VERSION);
    kmip_enc_int(&e, T_VERSION_MAJOR, v.major);
    kmip_enc_int(&e, T_VERSION_MINOR, v.minor);
    kmip_enc_end(&e);
    kmip_enc_int(&e, T_BATCH_COUNT, 1);
    kmip_enc_end(&e);
    kmip_enc_begin(&e, T_BATCH_ITEM);
    kmip_enc_enum(&e, T_OPERATION, rq->op);
    kmip_enc_begin(&e, T_REQUEST_PAYLOAD);
    enc_payload(&e, v, rq);
    kmip_enc_end(&e);
    kmip_enc_end(&e);
    kmip_enc_end(&e);
    return kmip_enc_finish(&e, out, len);
}

static tde_status
get_version(const kmip_item *pv, kmip_version *v)
{
    int32_t major, minor;
    TDE_RET(kmip_item_int(kmip_item_find(pv, T_VERSION_MAJOR), &major));
    TDE_RET(kmip_item_int(kmip_item_find(pv, T_VERSION_MINOR), &minor));
    v->major = major;
    v->minor = minor;
    return TDE_OK;
}

tde_status
kmip_response_decode(kmip_response *r, uint8_t *buf, size_t len, uint32_t op)
{
    tde_status st;
    const kmip_item *root, *hdr, *item, *it;
    int32_t count;

    memset(r, 0, sizeof(*r));
    r->buf = buf;
    r->buf_len = len;
    TDE_ERR(kmip_ttlv_decode(&r->tree, buf, len));
    root = kmip_tree_root(r->tree);
    TDE_ENSURE(root->tag == T_RESPONSE_MESSAGE && root->type == KMIP_T_STRUCT, TDE_ERR_PROTOCOL,
               "kmip: reply is not a Response Message (tag 0x%06x)", root->tag);
    hdr = kmip_item_find(root, T_RESPONSE_HEADER);
    TDE_ENSURE(hdr != NULL, TDE_ERR_PROTOCOL, "kmip: reply has no Response Header");
    TDE_ERR(get_version(kmip_item_find(hdr, T_PROTOCOL_VERSION), &r->version));
    TDE_ERR(kmip_item_int(kmip_item_find(hdr, T_BATCH_COUNT), &count));
    TDE_ENSURE(count == 1 && kmip_item_count(root, T_BATCH_ITEM) == 1, TDE_ERR_PROTOCOL,
               "kmip: reply has %d batch items, expected 1", (int)count);
    item = kmip_item_find(root, T_BATCH_ITEM);
    TDE_ERR(kmip_item_enum(kmip_item_find(item, T_RESULT_STATUS), &r->status));
    it = kmip_item_find(item, T_OPERATION);
    if (it != NULL)
        TDE_ERR(kmip_item_enum(it, &r->op));
    else
        r->op = r->status != 0 ? op : 0;
    TDE_ENSURE(r->op == op, TDE_ERR_PROTOCOL, "kmip: reply is for operation %u, expected %s (%u)",
               r->op, kmip_op_str(op), op);
    if ((it = kmip_item_find(item, T_RESULT_REASON)) != NULL)
        TDE_ERR(kmip_item_enum(it, &r->reason));
    if ((it = kmip_item_find(item, T_RESULT_MESSAGE)) != NULL)
        TDE_ERR(kmip_item_text(it, &r->message, &r->message_len));
    r->payload = kmip_item_find(item, T_RESPONSE_PAYLOAD);
    TDE_ENSURE(r->status != 0 || r->payload != NULL || op == KMIP_OP_LOCATE ||
                   op == KMIP_OP_DISCOVER_VERSIONS,
               TDE_ERR_PROTOCOL, "kmip: successful %s reply has no payload", kmip_op_str(op));
    return TDE_OK;
err:
    kmip_response_free(r);
    return st;
}

void
kmip_response_free(kmip_response *r)
{
    kmip_tree_free(r->tree);
    kmip_buf_free(r->buf, r->buf_len);
    memset(r, 0, sizeof(*r));
}

const char *
kmip_reason_str(uint32_t reason)
{
    static const char *const names[] = {
        NULL,
        "ItemNotFound",
        "ResponseTooLarge",
        "AuthenticationNotSuccessful",
        "InvalidMessage",
        "OperationNotSupported",
        "MissingData",
        "InvalidField",
        "FeatureNotSupported",
        "OperationCanceledByRequester",
        "CryptographicFailure",
        "IllegalOperation",
        "PermissionDenied",
        "ObjectArchived",
        "IndexOutOfBounds",
        "ApplicationNamespaceNotSupported",
        "KeyFormatTypeNotSupported",
        "KeyCompressionTypeNotSupported",
        "EncodingOptionError",
        "KeyValueNotPresent",
        "AttestationRequired",
        "AttestationFailed",
        "Sensitive",
        "NotExtractable",
        "ObjectAlreadyExists",
    };
    if (reason == KMIP_REASON_GENERAL_FAILURE)
        return "GeneralFailure";
    if (reason < sizeof(names) / sizeof(names[0]) && names[reason] != NULL)
        return names[reason];
    return "Unknown";
}

const char *
kmip_op_str(uint32_t op)
{
    switch (op) {
    case KMIP_OP_CREATE: return "Create";
    case KMIP_OP_REGISTER: return "Register";
    case KMIP_OP_LOCATE: return "Locate";
    case KMIP_OP_GET: return "Get";
    case KMIP_OP_ACTIVATE: return "Activate";
    case KMIP_OP_REVOKE: return "Revoke";
    case KMIP_OP_DESTROY: return "Destroy";
    case KMIP_OP_QUERY: return "Query";
    case KMIP_OP_DISCOVER_VERSIONS: return "DiscoverVersions";
    case KMIP_OP_ENCRYPT: return "Encrypt";
    case KMIP_OP_DECRYPT: return "Decrypt";
    default: return "Operation";
    }
}

tde_status
kmip_response_uid(const kmip_response *r, char *out, size_t cap)
{
    const char *s;
    size_t n;
    const kmip_item *it = kmip_item_find(r->payload, T_UNIQUE_IDENTIFIER);

    if (it == NULL)
        return tde_error_set(TDE_ERR_PROTOCOL, "kmip: %s reply has no Unique Identifier",
                             kmip_op_str(r->op));
    TDE_RET(kmip_item_text(it, &s, &n));
    if (n == 0 || n >= cap || memchr(s, '\0', n) != NULL)
        return tde_error_set(TDE_ERR_PROTOCOL, "kmip: %s reply has a bad Unique Identifier",
                             kmip_op_str(r->op));
    memcpy(out, s, n);
    out[n] = '\0';
    return TDE_OK;
}

size_t
kmip_response_uid_count(const kmip_response *r)
{
    return kmip_item_count(r->payload, T_UNIQUE_IDENTIFIER);
}

tde_status
kmip_response_key(const kmip_response *r, tde_secret **key)
{
    const kmip_item *block, *value, *mat;
    uint32_t type, format, alg;
    int32_t bits;
    const uint8_t *b;
    size_t n;

    TDE_RET(kmip_item_enum(kmip_item_find(r->payload, T_OBJECT_TYPE), &type));
    if (type != OBJECT_SYMMETRIC_KEY)
        return tde_error_set(TDE_ERR_UNSUPPORTED, "kmip: object is of type %u, not a symmetric key",
                             type);
    block = kmip_item_find(kmip_item_find(r->payload, T_SYMMETRIC_KEY), T_KEY_BLOCK);
    TDE_RET(kmip_item_enum(kmip_item_find(block, T_KEY_FORMAT_TYPE), &format));
    TDE_RET(kmip_item_enum(kmip_item_find(block, T_CRYPTO_ALGORITHM), &alg));
    TDE_RET(kmip_item_int(kmip_item_find(block, T_CRYPTO_LENGTH), &bits));
    if ((format != KEY_FORMAT_RAW && format != KEY_FORMAT_TRANSPARENT_SYMMETRIC) ||
        alg != ALGORITHM_AES || bits != 256)
        return tde_error_set(TDE_ERR_UNSUPPORTED,
                             "kmip: key is not a plain AES-256 key (format %u, algorithm %u, "
                             "%d bits)",
                             format, alg, (int)bits);
    value = kmip_item_find(block, T_KEY_VALUE);
    if (value == NULL || value->type != KMIP_T_STRUCT)
        return tde_error_set(TDE_ERR_UNSUPPORTED, "kmip: key value is wrapped or missing");
    mat = kmip_item_find(value, T_KEY_MATERIAL);
    /* Transparent Symmetric Key: Key Material is a structure holding Key (0x42003F). */
    if (mat != NULL && mat->type == KMIP_T_STRUCT)
        mat = kmip_item_find(mat, 0x42003F);
    TDE_RET(kmip_item_bytes(mat, &b, &n));
    if (n != KMIP_AES256_KEY_LEN)
        return tde_error_set(TDE_ERR_PROTOCOL, "kmip: AES-256 key material has %zu bytes", n);
    return tde_secret_from(key, b, n);
}

tde_status
kmip_response_data(const kmip_response *r, const uint8_t **data, size_t *len, const uint8_t **tag,
                   size_t *tag_len)
{
    const kmip_item *t;
    TDE_RET(kmip_item_bytes(kmip_item_find(r->payload, T_DATA), data, len));
    *tag = NULL;
    *tag_len = 0;
    if ((t = kmip_item_find(r->payload, T_AE_TAG)) != NULL)
        TDE_RET(kmip_item_bytes(t, tag, tag_len));
    return TDE_OK;
}

int
kmip_response_has_op(const kmip_response *r, uint32_t op)
{
    for (const kmip_item *it = kmip_item_find(r->payload, T_OPERATION); it != NULL;
         it = kmip_item_next_same(it)) {
        uint32_t v;
        if (kmip_item_enum(it, &v) == TDE_OK && v == op)
            return 1;
    }
    return 0;
}

tde_status
kmip_response_versions(const kmip_response *r, kmip_version *out, size_t cap, size_t *n)
{
    *n = 0;
    for (const kmip_item *it = kmip_item_find(r->payload, T_PROTOCOL_VERSION); it != NULL;
         it = kmip_item_next_same(it)) {
        if (*n == cap)
            break;
        TDE_RET(get_version(it, &out[*n]));
        (*n)++;
    }
    return TDE_OK;
}
