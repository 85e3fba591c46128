/*
 * Fuzzes the file dictionary's snapshot and log parsers.
 * Input: 1 flag byte (bit 0: check the MACs under the key 00 01 .. 1f), a 4-byte
 * little-endian snapshot length, the snapshot, then the log. Without bit 0 the
 * MAC checks are skipped so mutations reach the parsers behind them.
 * Seeds: files written by this version with that key (see tests/fixtures/keymgr/v1/filedict),
 * verified and unverified, plus torn, zero-filled and flipped variants, plus the inputs a
 * libFuzzer run added (file names are their SHA-1). For real coverage build the library with
 * -fsanitize=fuzzer-no-link too: CMAKE_C_FLAGS=-fsanitize=fuzzer-no-link.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keymgr/filedict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[TDE_FILEDICT_MAC_KEY_LEN];
    uint8_t *snap, *log;
    size_t snap_len, log_len, entries = 0;
    tde_status st;

    if (size < 5)
        return 0;
    for (int i = 0; i < TDE_FILEDICT_MAC_KEY_LEN; i++)
        key[i] = (uint8_t)i;
    snap_len =
        (size_t)data[1] | (size_t)data[2] << 8 | (size_t)data[3] << 16 | (size_t)data[4] << 24;
    if (snap_len > size - 5)
        snap_len = size - 5;
    log_len = size - 5 - snap_len;
    /* Exactly sized copies, so ASan sees a read past either part. */
    snap = malloc(snap_len + (snap_len == 0));
    log = malloc(log_len + (log_len == 0));
    if (snap == NULL || log == NULL)
        abort();
    memcpy(snap, data + 5, snap_len);
    memcpy(log, data + 5 + snap_len, log_len);
    st = tde_filedict_parse_buffers(snap, snap_len, log, log_len, key, data[0] & 1, &entries);
    if (st == TDE_OK && entries > snap_len + log_len)
        abort(); /* every entry takes bytes */
    free(snap);
    free(log);
    return 0;
}
