/*
 * The key dictionary: every data key by random 64-bit id (method, creation
 * time, key bytes), the current key id, and a random secret from which the
 * file dictionary's MAC key is derived. The whole dictionary is one record,
 * sealed under the master key and replaced atomically (durable write), so it
 * is rewritten only when keys change, never on file operations.
 *
 * Not thread-safe: the key manager serialises changes.
 */
#ifndef TDE_LIB_KEYMGR_KEYDICT_H
#define TDE_LIB_KEYMGR_KEYDICT_H

#include <stdbool.h>

#include "tde/cipher.h"
#include "tde/masterkey.h"
#include "tde/secret.h"

#define TDE_KEYDICT_FILE "key.dict"
/* A second copy of key.dict, written after it with the same bytes. */
#define TDE_KEYDICT_BACKUP_SUFFIX ".bak"
#define TDE_KEYDICT_MAGIC "TKDP"
#define TDE_KEYDICT_VERSION 1
#define TDE_KEYDICT_HEADER_LEN 64
#define TDE_KEYDICT_KEY_HEADER_LEN 20
#define TDE_KEYDICT_SECRET_LEN 32
/* The directory was created with encryption on: files missing from the dictionary are errors. */
#define TDE_KEYDICT_FLAG_ENFORCE 0x0001u
/* The file dictionary has been created (its absence later means it was lost). */
#define TDE_KEYDICT_FLAG_FILEDICT 0x0002u
#define TDE_KEYDICT_KNOWN_FLAGS (TDE_KEYDICT_FLAG_ENFORCE | TDE_KEYDICT_FLAG_FILEDICT)

typedef struct tde_keydict_key {
    uint64_t id;
    tde_method method;
    uint64_t created; /* seconds since the epoch */
    tde_secret *key;  /* NULL for plaintext */
} tde_keydict_key;

typedef struct tde_keydict {
    uint16_t flags;
    uint64_t generation; /* bumped on every store */
    uint64_t current_id;
    tde_secret *secret; /* TDE_KEYDICT_SECRET_LEN bytes */
    tde_keydict_key *keys;
    size_t n_keys;
} tde_keydict;

/* An empty dictionary with a fresh random secret. */
tde_status tde_keydict_init(tde_keydict *kd);
/* Wipes and frees every key. Accepts a zeroed dictionary. */
void tde_keydict_clear(tde_keydict *kd);

tde_keydict_key *tde_keydict_find(const tde_keydict *kd, uint64_t id);
/* Adds a fresh random key for @p m with a random id that is neither 0 nor in use (retried). */
tde_status tde_keydict_add(tde_keydict *kd, tde_method m, uint64_t now, uint64_t *id_out);
/* Removes (and wipes) key @p id; the current key cannot be removed. */
tde_status tde_keydict_remove(tde_keydict *kd, uint64_t id);

/* A deep copy of @p src into @p dst (for changing a copy and swapping it in after it is stored). */
tde_status tde_keydict_copy(tde_keydict *dst, const tde_keydict *src);

/* The plaintext record (secret memory: it holds key bytes). */
tde_status tde_keydict_encode(const tde_keydict *kd, tde_secret **out);
/* Parses a plaintext record into an empty @p kd; @p name is used in error messages. */
tde_status tde_keydict_decode(tde_keydict *kd, const uint8_t *buf, size_t len, const char *name);

/* The file dictionary's MAC key: HMAC-SHA256(secret, "libtde filedict mac v1"). */
tde_status tde_keydict_mac_key(const tde_keydict *kd, uint8_t out[32]);

/*
 * Reads and opens @p path (sealed under @p current, or @p previous: may be
 * NULL) into an empty @p kd. NOT_FOUND when the file does not exist; AUTH
 * (naming the provider) when neither master key opened it.
 */
tde_status tde_keydict_load(tde_keydict *kd, const char *path, tde_masterkey *current,
                            tde_masterkey *previous, const tde_masterkey **used);
/* Seals @p kd under @p mk and replaces @p path durably (0600), then its backup copy
 * "<path>.bak" (a failure there is logged, not returned: @p path is already durable). */
tde_status tde_keydict_store(const tde_keydict *kd, const char *path, tde_masterkey *mk);

/* Test hook: the source of new key ids (NULL restores tde_random_bytes). */
void tde_keydict_set_id_source(uint64_t (*fn)(void *arg), void *arg);

#endif
