/**
 * @file envelope.h
 * @brief Envelope encryption: wrapped data keys, sealed buffers, small secrets, sealed streams.
 *
 * Every record is versioned, self-describing and authenticated (layouts byte by
 * byte in docs/formats.md): it starts with the magic "TDEE", a format version
 * and a record-type byte, names the provider and master key id that wrapped its
 * data key, and its header is the GCM additional data, so changing any byte is
 * detected (TDE_ERR_AUTH) and a malformed record is rejected (TDE_ERR_CORRUPT).
 * The type byte is authenticated too, so one kind of record can never be
 * passed off as another.
 *
 * An optional caller-supplied context (like a KMS EncryptionContext) is bound
 * as additional data but not stored: opening needs the same context.
 *
 * Opening takes a current and an optional previous master key (TiKV's
 * previous-master-key). Only a key whose provider and key id match the record
 * is tried: the current one first, the previous one when the current one's id
 * does not match or it fails authentication, never after a provider failure
 * such as TDE_ERR_UNAVAILABLE. @p used (may be NULL) reports which handle
 * opened the record.
 *
 * All functions are thread-safe; master-key handles may be shared. Outputs
 * through `uint8_t **` are malloc()ed and owned by the caller (free()).
 */
#ifndef TDE_ENVELOPE_H
#define TDE_ENVELOPE_H

#include "tde/common.h"
#include "tde/masterkey.h"
#include "tde/secret.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Record-type bytes (stored, authenticated; the numbers never change). */
typedef enum tde_record_type {
    TDE_RECORD_WRAPPED_KEY = 1,   /**< a data key wrapped by a master key */
    TDE_RECORD_SEALED_BUFFER = 2, /**< a buffer sealed under a fresh data key */
    TDE_RECORD_SMALL_SECRET = 3,  /**< a secret (<= 4 KiB) wrapped by the master key directly */
    TDE_RECORD_STREAM = 4,        /**< the header of a sealed stream */
    TDE_RECORD_KEY_DICT = 5,      /**< the key manager's key dictionary (sealed-buffer layout) */
    TDE_RECORD_FILE_DICT = 6,     /**< the file dictionary (sealed-buffer layout) */
} tde_record_type;

/** Default and largest plaintext segment of a sealed stream. */
#define TDE_ENVELOPE_SEGMENT_DEFAULT (64u * 1024u)
#define TDE_ENVELOPE_SEGMENT_MAX (8u * 1024u * 1024u)

/** Largest secret tde_envelope_seal_small() accepts. */
#define TDE_ENVELOPE_SMALL_MAX 4096

/** Largest context (additional data) a call accepts. */
#define TDE_ENVELOPE_CONTEXT_MAX 4096

#define TDE_ENVELOPE_OPTIONS_VERSION 1

/** Options for every call; NULL means all defaults. Use the INIT macro (or zero-initialise). */
typedef struct tde_envelope_options {
    unsigned version;       /**< TDE_ENVELOPE_OPTIONS_VERSION (0 is taken as the current one) */
    const uint8_t *context; /**< bound as additional data, not stored; may be NULL */
    size_t context_len;
    /**
     * Sealed buffers only: 0 for TDE_RECORD_SEALED_BUFFER, or a library
     * module's own type with the sealed-buffer layout (TDE_RECORD_KEY_DICT,
     * TDE_RECORD_FILE_DICT). Opening requires the same type.
     */
    tde_record_type record_type;
    uint32_t segment_size; /**< sealing streams: plaintext bytes per segment, 0 for the default */
} tde_envelope_options;

#define TDE_ENVELOPE_OPTIONS_INIT                                                                  \
    {                                                                                              \
        TDE_ENVELOPE_OPTIONS_VERSION, NULL, 0, (tde_record_type)0, 0                               \
    }

/* ---- Wrapped data keys ---- */

/** Wraps @p key (1..TDE_MASTERKEY_MAX_WRAP bytes, not consumed) into a wrapped-key record. */
TDE_API TDE_MUST_USE tde_status tde_envelope_wrap_key(tde_masterkey *mk,
                                                      const tde_envelope_options *opts,
                                                      const tde_secret *key, uint8_t **rec,
                                                      size_t *rec_len);

/** Makes a fresh data key of @p key_len bytes through the provider, and its wrapped record. */
TDE_API TDE_MUST_USE tde_status tde_envelope_new_key(tde_masterkey *mk,
                                                     const tde_envelope_options *opts,
                                                     size_t key_len, tde_secret **key,
                                                     uint8_t **rec, size_t *rec_len);

/** Unwraps a wrapped-key record with @p current, falling back to @p previous (may be NULL). */
TDE_API TDE_MUST_USE tde_status tde_envelope_unwrap_key(
    tde_masterkey *current, tde_masterkey *previous, const tde_envelope_options *opts,
    const uint8_t *rec, size_t rec_len, tde_secret **key, const tde_masterkey **used);

/* ---- Sealed buffers (any size, held in memory) ---- */

/** Seals @p pt under a fresh data key wrapped by @p mk. */
TDE_API TDE_MUST_USE tde_status tde_envelope_seal(tde_masterkey *mk,
                                                  const tde_envelope_options *opts,
                                                  const uint8_t *pt, size_t pt_len, uint8_t **rec,
                                                  size_t *rec_len);

/** Opens a sealed buffer into malloc()ed @p pt (non-NULL even when empty). */
TDE_API TDE_MUST_USE tde_status tde_envelope_open(tde_masterkey *current, tde_masterkey *previous,
                                                  const tde_envelope_options *opts,
                                                  const uint8_t *rec, size_t rec_len, uint8_t **pt,
                                                  size_t *pt_len, const tde_masterkey **used);

/** Like tde_envelope_open() into secret memory (for records holding key material; 1..1 MiB). */
TDE_API TDE_MUST_USE tde_status tde_envelope_open_to_secret(
    tde_masterkey *current, tde_masterkey *previous, const tde_envelope_options *opts,
    const uint8_t *rec, size_t rec_len, tde_secret **pt, const tde_masterkey **used);

/* ---- Small secrets, wrapped by the provider directly (Tencent's "sensitive data" pattern) ---- */

/** Seals @p len (1..TDE_ENVELOPE_SMALL_MAX) bytes with the master key itself. */
TDE_API TDE_MUST_USE tde_status tde_envelope_seal_small(tde_masterkey *mk,
                                                        const tde_envelope_options *opts,
                                                        const uint8_t *secret, size_t len,
                                                        uint8_t **rec, size_t *rec_len);

TDE_API TDE_MUST_USE tde_status tde_envelope_open_small(
    tde_masterkey *current, tde_masterkey *previous, const tde_envelope_options *opts,
    const uint8_t *rec, size_t rec_len, tde_secret **secret, const tde_masterkey **used);

/* ---- Master-key rotation ---- */

/**
 * Re-wraps the data key of a wrapped-key, sealed-buffer or small-secret record
 * under @p target, opening it with @p current / @p previous. The sealed bulk
 * data is copied unchanged (never decrypted). Safe while other threads use the
 * same handles.
 */
TDE_API TDE_MUST_USE tde_status tde_envelope_rewrap(tde_masterkey *current, tde_masterkey *previous,
                                                    tde_masterkey *target,
                                                    const tde_envelope_options *opts,
                                                    const uint8_t *rec, size_t rec_len,
                                                    uint8_t **out, size_t *out_len,
                                                    const tde_masterkey **used);

/* ---- Sealed streams: any size in bounded memory ---- */

/**
 * Reads up to @p cap bytes into @p buf; *got = 0 means end of input. Short
 * reads are fine. Returns TDE_OK or an error that aborts the operation.
 */
typedef tde_status (*tde_read_fn)(void *arg, uint8_t *buf, size_t cap, size_t *got);

/** Writes all @p len bytes. */
typedef tde_status (*tde_write_fn)(void *arg, const uint8_t *buf, size_t len);

/**
 * Seals everything @p rd yields as a stream of authenticated segments under a
 * fresh data key. Memory use is about two segments whatever the input size.
 */
TDE_API TDE_MUST_USE tde_status tde_envelope_seal_stream(tde_masterkey *mk,
                                                         const tde_envelope_options *opts,
                                                         tde_read_fn rd, void *rd_arg,
                                                         tde_write_fn wr, void *wr_arg);

/**
 * Opens a sealed stream. Each segment's plaintext is written only after it
 * verified, but a failure in a later segment (truncation, reordering,
 * splicing: TDE_ERR_AUTH or TDE_ERR_CORRUPT) leaves the earlier segments
 * written: the caller must discard the output unless this returns TDE_OK.
 */
TDE_API TDE_MUST_USE tde_status tde_envelope_open_stream(
    tde_masterkey *current, tde_masterkey *previous, const tde_envelope_options *opts,
    tde_read_fn rd, void *rd_arg, tde_write_fn wr, void *wr_arg, const tde_masterkey **used);

/**
 * Re-wraps a sealed stream's data key under @p target, copying the segments
 * unchanged (never decrypted). The output is a complete new stream.
 */
TDE_API TDE_MUST_USE tde_status
tde_envelope_rewrap_stream(tde_masterkey *current, tde_masterkey *previous, tde_masterkey *target,
                           const tde_envelope_options *opts, tde_read_fn rd, void *rd_arg,
                           tde_write_fn wr, void *wr_arg, const tde_masterkey **used);

/** File-descriptor conveniences for the stream functions (retrying EINTR and short I/O). */
TDE_API TDE_MUST_USE tde_status tde_envelope_seal_fd(tde_masterkey *mk,
                                                     const tde_envelope_options *opts, int in_fd,
                                                     int out_fd);
TDE_API TDE_MUST_USE tde_status tde_envelope_open_fd(tde_masterkey *current,
                                                     tde_masterkey *previous,
                                                     const tde_envelope_options *opts, int in_fd,
                                                     int out_fd, const tde_masterkey **used);

#ifdef __cplusplus
}
#endif
#endif
