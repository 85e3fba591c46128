/*
 * KMIP request/response messages for the operations libtde uses, in the KMIP 1.x
 * shape (TemplateAttribute / Attribute by name) and the KMIP 2.0 shape
 * (Attributes structure of tagged fields). One batch item per message.
 */
#ifndef TDE_KMIP_MSG_H
#define TDE_KMIP_MSG_H

#include "masterkey/kmip_ttlv.h"
#include "tde/secret.h"

typedef struct kmip_version {
    int major, minor;
} kmip_version;

/* Negative when a < b, 0 when equal, positive when a > b. */
int kmip_version_cmp(kmip_version a, kmip_version b);

/* Operations (KMIP 1.4 section 9.1.3.2.27). */
enum kmip_op {
    KMIP_OP_CREATE = 1,
    KMIP_OP_REGISTER = 3,
    KMIP_OP_LOCATE = 8,
    KMIP_OP_GET = 10,
    KMIP_OP_ACTIVATE = 18,
    KMIP_OP_REVOKE = 19,
    KMIP_OP_DESTROY = 20,
    KMIP_OP_QUERY = 24,
    KMIP_OP_DISCOVER_VERSIONS = 30,
    KMIP_OP_ENCRYPT = 31,
    KMIP_OP_DECRYPT = 32,
};

/* Result reasons used in decisions (KMIP 1.4 section 9.1.3.2.29). */
enum {
    KMIP_REASON_ITEM_NOT_FOUND = 1,
    KMIP_REASON_AUTH_FAILED = 3,
    KMIP_REASON_CRYPTO_FAILURE = 10,
    KMIP_REASON_PERMISSION_DENIED = 12,
    KMIP_REASON_GENERAL_FAILURE = 256,
};

/* Cryptographic Usage Mask bits. */
#define KMIP_USAGE_ENCRYPT 0x04
#define KMIP_USAGE_DECRYPT 0x08
#define KMIP_USAGE_WRAP_KEY 0x10
#define KMIP_USAGE_UNWRAP_KEY 0x20

#define KMIP_AES256_KEY_LEN 32
#define KMIP_MAX_VERSIONS 8

/* One request. Fields an operation does not use are ignored; all are borrowed. */
typedef struct kmip_request {
    uint32_t op;
    const char *uid;    /* Get, Activate, Revoke, Destroy, Encrypt, Decrypt */
    const char *name;   /* Create, Register, Locate */
    uint32_t usage;     /* Create, Register: Cryptographic Usage Mask */
    const uint8_t *key; /* Register: AES-256 key material (KMIP_AES256_KEY_LEN bytes) */
    uint32_t revocation_reason;
    const kmip_version *versions; /* DiscoverVersions: the client's, preferred first */
    size_t n_versions;
    const uint8_t *data, *iv, *aad, *tag; /* Encrypt/Decrypt with AES-GCM */
    size_t data_len, iv_len, aad_len, tag_len;
} kmip_request;

/* Encodes @p rq as a KMIP @p v message. *out is for kmip_buf_free(). */
TDE_MUST_USE tde_status kmip_request_encode(kmip_version v, const kmip_request *rq, uint8_t **out,
                                            size_t *len);

/* A decoded response. It owns its buffer; every pointer borrows from it. */
typedef struct kmip_response {
    uint8_t *buf;
    size_t buf_len;
    kmip_tree *tree;
    kmip_version version;
    uint32_t op;
    uint32_t status; /* 0 Success, 1 OperationFailed, 2 Pending, 3 Undone */
    uint32_t reason; /* when status != 0 (0 when the server gave none) */
    const char *message;
    size_t message_len;
    const kmip_item *payload; /* NULL when absent */
} kmip_response;

/*
 * Decodes a response to a request for @p op. Takes ownership of @p buf on success
 * and failure. TDE_ERR_PROTOCOL when it is not a well-formed one-item response to
 * @p op. A failed operation is not an error here: check r->status.
 */
TDE_MUST_USE tde_status kmip_response_decode(kmip_response *r, uint8_t *buf, size_t len,
                                             uint32_t op);
void kmip_response_free(kmip_response *r);

/* The name of a Result Reason ("ItemNotFound"), or "Unknown". */
const char *kmip_reason_str(uint32_t reason);
/* The name of an operation ("Get"), or "Operation". */
const char *kmip_op_str(uint32_t op);

/* The payload's (first) Unique Identifier, copied into @p out as a C string. */
TDE_MUST_USE tde_status kmip_response_uid(const kmip_response *r, char *out, size_t cap);
/* Number of Unique Identifiers in the payload (Locate). */
size_t kmip_response_uid_count(const kmip_response *r);
/* Get: the AES-256 key material of a Symmetric Key in Raw or Transparent format. */
TDE_MUST_USE tde_status kmip_response_key(const kmip_response *r, tde_secret **key);
/* Encrypt/Decrypt: Data, and for Encrypt the authentication tag (NULL/0 when absent). */
TDE_MUST_USE tde_status kmip_response_data(const kmip_response *r, const uint8_t **data,
                                           size_t *len, const uint8_t **tag, size_t *tag_len);
/* Query: whether operation @p op is listed. */
int kmip_response_has_op(const kmip_response *r, uint32_t op);
/* DiscoverVersions: the server's versions, in its order. */
TDE_MUST_USE tde_status kmip_response_versions(const kmip_response *r, kmip_version *out,
                                               size_t cap, size_t *n);

#endif
